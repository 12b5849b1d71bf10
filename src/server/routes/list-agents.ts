import type { MessageInitShape } from "@bufbuild/protobuf";
import { AgentStatus, type ListAgentsRequest, type ListAgentsResponseSchema } from "../../../gen/agentid/v1/agent_pb.js";
import { listAgentPage } from "../../domain/agents.js";
import { invalidArgument } from "../../domain/errors.js";
import type { AppContext } from "../context.js";
import { agentMessage, agentStatusFilter } from "../messages.js";

export function listAgentsRoute(ctx: AppContext) {
  return async (req: ListAgentsRequest): Promise<MessageInitShape<typeof ListAgentsResponseSchema>> => {
    if (!(req.status in AgentStatus)) throw invalidArgument("status", `unknown value ${req.status}`);
    const page = await listAgentPage(ctx.db, {
      pageSize: req.pageSize,
      pageToken: req.pageToken,
      status: agentStatusFilter(req.status),
    });
    return { agents: page.agents.map(agentMessage), nextPageToken: page.nextPageToken };
  };
}
