import type { MessageInitShape } from "@bufbuild/protobuf";
import { AgentStatus, type ListAgentsRequest, type ListAgentsResponseSchema } from "../../../gen/agentid/v1/agent_pb.js";
import { listAgentPage, summarizeAgents } from "../../domain/agents.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireLabels } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import { agentMessage, agentStatusFilter } from "../messages.js";

export function listAgentsRoute(ctx: AppContext) {
  return async (req: ListAgentsRequest): Promise<MessageInitShape<typeof ListAgentsResponseSchema>> => {
    if (!(req.status in AgentStatus)) throw invalidArgument("status", `unknown value ${req.status}`);
    const page = await listAgentPage(ctx.db, {
      pageSize: req.pageSize,
      pageToken: req.pageToken,
      status: agentStatusFilter(req.status),
      text: req.query.trim(),
      labels: requireLabels("labels", req.labels),
    });
    const summaries = await summarizeAgents(ctx.db, page.agents);
    return { agents: page.agents.map((a) => agentMessage(a, summaries.get(a.id))), nextPageToken: page.nextPageToken };
  };
}
