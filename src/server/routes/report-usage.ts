import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { UsageOutcome, type ReportUsageRequest, type ReportUsageResponseSchema } from "../../../gen/agentid/v1/activity_pb.js";
import { InactiveReason } from "../../../gen/agentid/v1/token_pb.js";
import type { UsageInput } from "../../domain/activity.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireTokenId } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { reporterOf } from "../auth.js";
import { isOperation } from "../../client/verifier.js";

const MAX_RECORDS = 10_000;
const MAX_COUNT = 1_000_000;
// Scopes and audiences: printable ASCII without spaces, as Issue accepts them.
const WORD = /^[\x21-\x7e]*$/;
// Year 1 to 9999: what every client and PostgreSQL can represent.
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;

export function requireTime(field: string, t: Timestamp | undefined): Date {
  if (!t) throw invalidArgument(field, "is required");
  if (t.seconds < MIN_SECONDS || t.seconds > MAX_SECONDS || t.nanos < 0 || t.nanos > 999_999_999) {
    throw invalidArgument(field, "must be a time between the years 1 and 9999");
  }
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6));
}

function outcomeOf(field: string, o: UsageOutcome, r: InactiveReason): string {
  switch (o) {
    case UsageOutcome.ALLOWED:
      return "allowed";
    case UsageOutcome.SCOPE_NOT_GRANTED:
      return "scope_not_granted";
    case UsageOutcome.AUDIENCE_MISMATCH:
      return "audience_mismatch";
    case UsageOutcome.INACTIVE:
      if (r === InactiveReason.UNSPECIFIED || InactiveReason[r] === undefined) {
        throw invalidArgument(`${field}.inactive_reason`, "is required with USAGE_OUTCOME_INACTIVE");
      }
      return `inactive:${InactiveReason[r].toLowerCase()}`;
    case UsageOutcome.UNSPECIFIED:
    default:
      throw invalidArgument(`${field}.outcome`, "must be ALLOWED, SCOPE_NOT_GRANTED, AUDIENCE_MISMATCH or INACTIVE");
  }
}

export function reportUsageRoute(ctx: AppContext) {
  return async (req: ReportUsageRequest, call: CallContext): Promise<MessageInitShape<typeof ReportUsageResponseSchema>> => {
    if (req.records.length > MAX_RECORDS) throw invalidArgument("records", `at most ${MAX_RECORDS} per request`);
    if (req.dropped < 0n || req.dropped > 1_000_000_000n) throw invalidArgument("dropped", "must be from 0 to 1e9");
    const records: UsageInput[] = req.records.map((r, i) => {
      const f = `records[${i}]`;
      let token: UsageInput["token"];
      switch (r.token.case) {
        case "tokenId":
          token = { tokenId: requireTokenId(`${f}.token_id`, r.token.value) };
          break;
        case "tokenSha256":
          if (r.token.value.length !== 32) throw invalidArgument(`${f}.token_sha256`, "must be 32 bytes (SHA-256 of the token)");
          token = { sha256: Buffer.from(r.token.value) };
          break;
        case undefined:
        default:
          throw invalidArgument(`${f}.token_id`, "token_id or token_sha256 is required");
      }
      if (r.audience.length > 256 || !WORD.test(r.audience)) throw invalidArgument(`${f}.audience`, "must be at most 256 printable characters without spaces");
      if (r.scope.length > 128 || !WORD.test(r.scope)) throw invalidArgument(`${f}.scope`, "must be at most 128 printable characters without spaces");
      if (!isOperation(r.operation)) throw invalidArgument(`${f}.operation`, "must be at most 200 printable ASCII characters");
      const outcome = outcomeOf(f, r.outcome, r.inactiveReason);
      if (r.count < 1n || r.count > BigInt(MAX_COUNT)) throw invalidArgument(`${f}.count`, `must be from 1 to ${MAX_COUNT}`);
      const firstSeen = requireTime(`${f}.first_seen`, r.firstSeen);
      const lastSeen = requireTime(`${f}.last_seen`, r.lastSeen);
      if (firstSeen > lastSeen) throw invalidArgument(`${f}.first_seen`, "must not be after last_seen");
      return { token, audience: r.audience, scope: r.scope, operation: r.operation, outcome, count: Number(r.count), firstSeen, lastSeen };
    });
    const res = await ctx.activity.ingest(reporterOf(call.caller), records, Number(req.dropped));
    return { accepted: BigInt(res.accepted), rejected: BigInt(res.rejected), stale: BigInt(res.stale) };
  };
}
