import type { MessageInitShape } from "@bufbuild/protobuf";
import { ActivityKind, type ReportActivityRequest, type ReportActivityResponseSchema } from "../../../gen/agentid/v1/activity_pb.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireAgentId, requireText, requireTokenId } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { trustScoreMessage } from "../messages.js";
import { reporterOf } from "../auth.js";

export function reportActivityRoute(ctx: AppContext) {
  return async (req: ReportActivityRequest, call: CallContext): Promise<MessageInitShape<typeof ReportActivityResponseSchema>> => {
    const given = [req.agentId, req.tokenId, req.token].filter((v) => v !== "").length;
    if (given !== 1) throw invalidArgument("agent_id", "give exactly one of agent_id, token_id or token");
    const target = req.agentId
      ? { agentId: requireAgentId("agent_id", req.agentId) }
      : req.tokenId
        ? { tokenId: requireTokenId("token_id", req.tokenId) }
        : { token: req.token };
    if (req.token.length > 4096) throw invalidArgument("token", "must be at most 4096 characters");
    let kind: "scope_violation" | "anomalous_request";
    switch (req.kind) {
      case ActivityKind.SCOPE_VIOLATION:
        kind = "scope_violation";
        break;
      case ActivityKind.ANOMALOUS_REQUEST:
        kind = "anomalous_request";
        break;
      default:
        throw invalidArgument("kind", "must be ACTIVITY_KIND_SCOPE_VIOLATION or ACTIVITY_KIND_ANOMALOUS_REQUEST");
    }
    requireText("detail", req.detail, 1024, { optional: true });
    const reporter = reporterOf(call.caller);
    const r = await ctx.activity.report(target, kind, req.detail, reporter);
    // A resource server learns nothing about the agent beyond what the feed tells it.
    if (reporter.audiences !== undefined) return { agentRevoked: r.revoked };
    return { trustScore: trustScoreMessage(r.trust), agentRevoked: r.revoked, revokedBy: r.revokedBy };
  };
}
