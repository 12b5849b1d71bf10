// What reaches the transparency log of what agents did: one `activity.usage` entry per agent,
// reporter and bucket, written once the bucket has closed, or at once when the agent is killed.
import { sql } from "kysely";
import type { Logger } from "pino";
import type { Db, Tx } from "../store/database.js";
import { claimAgentUsage, claimClosedBuckets, hasUnlogged, listTrustScores, type TrustScoreRecord, type UsageCount, type UsageGroup } from "../store/activity.js";
import { listAuditEntries } from "../store/audit.js";
import { appendAuditEntry, MAX_DETAILS } from "../audit/append.js";
import { canonicalJson } from "../audit/canonical-json.js";
import type { LogWaker } from "../store/sequencer.js";

/** A bucket is summarised this long after it ends, once batches in flight have committed. */
const TRAIL_GRACE_SECONDS = 2;
/** Buckets summarised per run at most (a replica catching up does it over several runs). */
const MAX_BUCKETS_PER_RUN = 10;
/** Room left in an entry's details for everything but the counts. */
const COUNTS_BUDGET = MAX_DETAILS - 1024;

/**
 * A group's summary as entry details: one entry, or several when its counts would not fit in one
 * (each part says which it is, and its own total).
 */
export function usageDetails(g: UsageGroup, bucketSeconds: number): Record<string, string | number | boolean | UsageCount[]>[] {
  const parts: UsageCount[][] = [[]];
  let size = 0;
  for (const c of g.counts) {
    const n = canonicalJson(c).length + 1;
    if (size + n > COUNTS_BUDGET && parts.at(-1)!.length > 0) {
      parts.push([]);
      size = 0;
    }
    parts.at(-1)!.push(c);
    size += n;
  }
  return parts.map((counts, i) => ({
    bucket_start: g.bucket.toISOString(),
    bucket_seconds: bucketSeconds,
    first_seen: g.firstSeen.toISOString(),
    last_seen: g.lastSeen.toISOString(),
    total: counts.reduce((s, c) => s + c.count, 0),
    counts,
    ...(g.continued ? { continued: true } : {}),
    ...(parts.length > 1 ? { part: i + 1, parts: parts.length } : {}),
  }));
}

export class Trail {
  constructor(
    private readonly db: Db,
    private readonly logs: LogWaker,
    private readonly logger: Logger,
    private readonly bucketSeconds: number,
  ) {}

  /** Summarises closed buckets into the log; the number of groups written. */
  async logClosed(): Promise<number> {
    const written = await this.db.transaction().execute(async (tx) => {
      const groups = await claimClosedBuckets(tx, this.bucketSeconds, TRAIL_GRACE_SECONDS, MAX_BUCKETS_PER_RUN);
      return groups ? this.append(tx, groups) : 0;
    });
    if (written > 0) this.logs.wake("audit");
    return written;
  }

  /** Logs everything counted of an agent that the log lacks, its open buckets included: the kill's trail. */
  async seal(agentId: string): Promise<number> {
    // Most killed agents have nothing waiting: one read, and no transaction.
    if (!(await hasUnlogged(this.db, agentId))) return 0;
    const written = await this.db.transaction().execute(async (tx) => this.append(tx, await claimAgentUsage(tx, agentId)));
    if (written > 0) this.logs.wake("audit");
    return written;
  }

  /**
   * Appends each group's entries. A group that cannot be written is left out and logged as an
   * error with its counts: it must not hold back every other agent's trail.
   */
  private async append(tx: Tx, groups: UsageGroup[]): Promise<number> {
    let written = 0;
    for (const g of groups) {
      await sql`savepoint usage_group`.execute(tx);
      try {
        for (const details of usageDetails(g, this.bucketSeconds)) {
          await appendAuditEntry(tx, { kind: "activity.usage", agentId: g.agentId, actor: g.reporter, details });
        }
        await sql`release savepoint usage_group`.execute(tx);
        written++;
      } catch (err) {
        await sql`rollback to savepoint usage_group`.execute(tx);
        this.logger.error({ err: (err as Error).message, agentId: g.agentId, reporter: g.reporter, bucket: g.bucket, counts: g.counts }, "activity: a usage summary could not be logged; left out");
      }
    }
    return written;
  }
}

export interface TimelineEvent {
  at: Date;
  kind: string;
  seq: bigint;
  summary: string;
  usage?: { reporter: string; details: Record<string, unknown> };
  trust?: TrustScoreRecord;
}

/** An agent's timeline: usage summaries, score changes, policy decisions, reports, issuance and the kill. */
export async function timeline(
  db: Db,
  o: { bucketMs: number; flushMs: number },
  agentId: string,
  since: Date,
  until: Date,
  limit: number,
): Promise<TimelineEvent[]> {
  // Summaries are logged after their bucket closes: look a little past `until` for them.
  const slack = o.bucketMs + TRAIL_GRACE_SECONDS * 1000 + 10 * o.flushMs;
  const [entries, scores] = await Promise.all([
    listAuditEntries(db, { agentId, since, until: new Date(until.getTime() + slack), fromSeq: 0n, limit: 10 * limit }),
    listTrustScores(db, { agentId, since, until, limit }),
  ]);
  const events: TimelineEvent[] = [];
  for (const e of entries) {
    const d = e.details as Record<string, unknown>;
    if (e.kind === "activity.usage") {
      const at = new Date(String(d.first_seen));
      if (at < since || at >= until) continue;
      events.push({ at, kind: "usage", seq: e.seq, summary: usageLine(d, e.actor), usage: { reporter: e.actor, details: d } });
      continue;
    }
    if (e.at >= until) continue;
    const kind =
      e.kind === "agent.revoked"
        ? e.actor.startsWith("policy:")
          ? "policy"
          : "revoked"
        : ({ "agent.registered": "registered", "token.issued": "token", "token.revoked": "revoked", "activity.reported": "report" } as Record<string, string>)[e.kind] ?? e.kind;
    const what = e.kind === "token.issued" ? `token ${e.tokenId} issued (${(d.scopes as string[] | undefined)?.join(" ") ?? ""})` : `${e.kind}${e.tokenId ? ` ${e.tokenId}` : ""}`;
    events.push({ at: e.at, kind, seq: e.seq, summary: `${what} by ${e.actor}${e.reason ? `: ${e.reason}` : ""}` });
  }
  for (const s of scores) {
    const parts = s.factors.filter((f) => f.contribution !== 0).map((f) => `${f.name} ${f.contribution}`);
    events.push({ at: s.computedAt, kind: "trust_score", seq: 0n, summary: `trust score ${s.score}${parts.length ? ` (${parts.join(", ")})` : ""}`, trust: s });
  }
  events.sort((a, b) => a.at.getTime() - b.at.getTime() || Number(a.seq - b.seq));
  return events.slice(0, limit);
}

/** How a count's source reads in a summary line (a resource server's report needs no word). */
const SOURCE_WORD: Record<string, string> = { gateway: "gateway ", introspect: "introspected " };

function usageLine(d: Record<string, unknown>, reporter: string): string {
  const counts = (d.counts as UsageCount[] | undefined) ?? [];
  const parts = counts.map((c) => `${SOURCE_WORD[c.source] ?? ""}${c.operation ? `${c.operation} ` : ""}${c.scope || "-"}@${c.audience || "-"} ${c.outcome} ${c.count}`);
  const part = d.parts ? ` (part ${String(d.part)} of ${String(d.parts)})` : "";
  return `${String(d.total)} request(s) via ${reporter}${d.continued ? ", more" : ""}${part}: ${parts.join(", ")}`;
}
