import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListTrustScoresRequest, ListTrustScoresResponseSchema } from "../../../gen/agentid/v1/activity_pb.js";
import { listTrustScores } from "../../store/activity.js";
import { getAgent } from "../../domain/agents.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireAgentId } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import { trustScoreMessage } from "../messages.js";
import { requireTime } from "./report-usage.js";

export function listTrustScoresRoute(ctx: AppContext) {
  return async (req: ListTrustScoresRequest): Promise<MessageInitShape<typeof ListTrustScoresResponseSchema>> => {
    const agentId = requireAgentId("agent_id", req.agentId);
    if (req.pageSize < 0 || req.pageSize > 1000) throw invalidArgument("page_size", "must be between 0 and 1000");
    const since = req.since ? requireTime("since", req.since) : undefined;
    const until = req.until ? requireTime("until", req.until) : undefined;
    if (since && until && since > until) throw invalidArgument("since", "must not be after until");
    await getAgent(ctx.db, agentId);
    const rows = await listTrustScores(ctx.db, { agentId, since, until, limit: req.pageSize || 100 });
    return { trustScores: rows.map(trustScoreMessage) };
  };
}
