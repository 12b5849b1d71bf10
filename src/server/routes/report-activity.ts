import type { MessageInitShape } from "@bufbuild/protobuf";
import { ActivityKind, type ReportActivityRequest, type ReportActivityResponseSchema } from "../../../gen/agentid/v1/activity_pb.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireAgentId } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { trustScoreMessage } from "../messages.js";

export function reportActivityRoute(ctx: AppContext) {
  return async (req: ReportActivityRequest, call: CallContext): Promise<MessageInitShape<typeof ReportActivityResponseSchema>> => {
    const agentId = requireAgentId("agent_id", req.agentId);
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
    if (req.detail.length > 1024) throw invalidArgument("detail", "must be at most 1024 characters");
    const r = await ctx.activity.report(agentId, kind, req.detail, call.principal);
    return { trustScore: trustScoreMessage(r.trust), agentRevoked: r.revoked, revokedBy: r.revokedBy };
  };
}
