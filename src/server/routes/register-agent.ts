import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RegisterAgentRequest, RegisterAgentResponseSchema } from "../../../gen/agentid/v1/agent_pb.js";
import { registerAgent, requirePublicKey } from "../../domain/agents.js";
import { requireEntryRoom, requireLabels, requireText, requireWords } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { agentMessage } from "../messages.js";

export function registerAgentRoute(ctx: AppContext) {
  return async (req: RegisterAgentRequest, call: CallContext): Promise<MessageInitShape<typeof RegisterAgentResponseSchema>> => {
    const r = {
      name: requireText("name", req.name, 128),
      publicKey: requirePublicKey("public_key", req.publicKey),
      labels: requireLabels("labels", req.labels),
      allowedScopes: requireWords("allowed_scopes", req.allowedScopes, 128, 64),
      allowedAudiences: requireWords("allowed_audiences", req.allowedAudiences, 256, 16),
    };
    // The agent.registered entry holds all of it, within the log's 16 KiB of details.
    requireEntryRoom("labels", r.labels, 8192);
    requireEntryRoom("allowed_scopes", r.allowedScopes, 3072);
    requireEntryRoom("allowed_audiences", r.allowedAudiences, 3072);
    const agent = await registerAgent(ctx.db, ctx.sequencer, r, call.principal);
    ctx.logger.info({ agentId: agent.id }, "agent registered");
    return { agent: agentMessage(agent) };
  };
}
