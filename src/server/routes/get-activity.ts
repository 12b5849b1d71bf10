import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { GetActivityRequest, GetActivityResponseSchema } from "../../../gen/agentid/v1/activity_pb.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireAgentId } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import { trustScoreMessage } from "../messages.js";
import { requireTime } from "./report-usage.js";
import type { UsageCount } from "../../store/activity.js";

export function getActivityRoute(ctx: AppContext) {
  return async (req: GetActivityRequest): Promise<MessageInitShape<typeof GetActivityResponseSchema>> => {
    const agentId = requireAgentId("agent_id", req.agentId);
    if (req.pageSize < 0 || req.pageSize > 5000) throw invalidArgument("page_size", "must be between 0 and 5000");
    const until = req.until ? requireTime("until", req.until) : new Date();
    const since = req.since ? requireTime("since", req.since) : new Date(until.getTime() - 3_600_000);
    if (since > until) throw invalidArgument("since", "must not be after until");
    const events = await ctx.activity.timeline(agentId, since, until, req.pageSize || 1000);
    return {
      events: events.map((e) => {
        const d = e.usage?.details;
        return {
          at: timestampFromDate(e.at),
          kind: e.kind,
          summary: e.summary,
          seq: e.seq,
          usage: d && {
            reporter: e.usage!.reporter,
            bucketStart: timestampFromDate(new Date(String(d.bucket_start))),
            bucket: durationFromMs(Number(d.bucket_seconds) * 1000),
            firstSeen: timestampFromDate(new Date(String(d.first_seen))),
            lastSeen: timestampFromDate(new Date(String(d.last_seen))),
            total: BigInt(Number(d.total)),
            counts: ((d.counts as UsageCount[]) ?? []).map((c) => ({
              source: c.source,
              audience: c.audience,
              scope: c.scope,
              operation: c.operation ?? "",
              outcome: c.outcome,
              count: BigInt(c.count),
            })),
          },
          trustScore: e.trust && trustScoreMessage(e.trust),
        };
      }),
    };
  };
}
