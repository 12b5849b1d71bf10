import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GetAgentRequest, GetAgentResponseSchema } from "../../../gen/agentid/v1/agent_pb.js";
import { getAgent, summarizeAgents } from "../../domain/agents.js";
import { requireAgentId } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import { agentMessage } from "../messages.js";

export function getAgentRoute(ctx: AppContext) {
  return async (req: GetAgentRequest): Promise<MessageInitShape<typeof GetAgentResponseSchema>> => {
    const agent = await getAgent(ctx.db, requireAgentId("agent_id", req.agentId));
    const summaries = await summarizeAgents(ctx.db, [agent]);
    return { agent: agentMessage(agent, summaries.get(agent.id)) };
  };
}
