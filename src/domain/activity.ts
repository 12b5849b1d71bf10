import type { Logger } from "pino";
import type { Db } from "../store/database.js";
import type { Sequencer } from "../store/sequencer.js";
import {
  addDrops,
  applyUsage,
  claimClosedBuckets,
  countScopeViolations,
  findTokens,
  insertReport,
  insertTrustScores,
  listTrustScores,
  readSignals,
  type AgentSignals,
  type TrustScoreRecord,
  type UsageRow,
} from "../store/activity.js";
import { listAuditEntries } from "../store/audit.js";
import { findAgent } from "../store/agents.js";
import { listPolicies } from "../store/policies.js";
import { DomainError, notFound } from "./errors.js";
import { revoke } from "./revocation.js";
import { appendAuditEntry } from "../audit/append.js";
import { hashSecret } from "./ids.js";
import { trustScore } from "./trust.js";
import { policyEvidence } from "./policies.js";

export type ReportKind = "scope_violation" | "anomalous_request";

export interface Evaluation {
  trust: TrustScoreRecord;
  revoked: boolean;
  revokedBy: string;
}

/** Who reports: its principal, and the audiences it may see (undefined: every audience, an admin). */
export interface Reporter {
  principal: string;
  audiences: readonly string[] | undefined;
}

/** One usage record as a resource server sends it, validated for shape by the route. */
export interface UsageInput {
  token: { tokenId: string } | { sha256: Buffer };
  audience: string;
  scope: string;
  /** allowed, scope_not_granted, audience_mismatch, or inactive:<reason>. */
  outcome: string;
  count: number;
  firstSeen: Date;
  lastSeen: Date;
}

export interface IngestResult {
  accepted: number;
  rejected: number;
  stale: number;
}

export interface SignalsOptions {
  /** Granularity of usage counts and of the activity trail's summaries. */
  bucketMs: number;
  /** The recent window the request rate and novelty are judged over. */
  windowMs: number;
  /** Windows before it that make an agent's baseline (the horizon is 1 + this many windows). */
  baselineWindows: number;
  /** Requests before the window needed for a baseline. */
  minBaseline: number;
  /** How often Introspect's counts are written and closed buckets summarised into the log. */
  flushMs: number;
  /** Introspect's pending usage lines, at most; beyond it counts are dropped (and logged). */
  maxPending: number;
}

export const DEFAULT_SIGNALS: SignalsOptions = {
  bucketMs: 60_000,
  windowMs: 3_600_000,
  baselineWindows: 23,
  minBaseline: 100,
  flushMs: 1000,
  maxPending: 100_000,
};

/** Accepted reporting times: a day back (a reporter that was cut off), a little ahead (clock skew). */
const MAX_AGE_MS = 86_400_000;
const MAX_AHEAD_MS = 300_000;
/** A score is recorded when it changes, and at least this often while activity arrives. */
const HISTORY_CADENCE_MS = 3_600_000;
/** A bucket is summarised this long after it ends, once batches in flight have committed. */
const TRAIL_GRACE_SECONDS = 2;
/** How often an idle replica looks for buckets left unsummarised (by a replica that stopped). */
const TRAIL_IDLE_MS = 60_000;

/**
 * Behaviour signals in and trust decisions out. Every source of activity (resource servers' usage
 * reports, Introspect, incident reports) goes through one batched path: a batch is applied in a
 * bounded number of statements, and each agent it touches is scored and checked against the
 * policies once. Introspect's counts are kept in memory and written once per flushMs by one loop,
 * so reads never turn into concurrent writes. Reading a score writes nothing.
 */
export class ActivityTracker {
  private pending = new Map<string, UsageRow>();
  /** Scopes and audiences known to be recorded as used ("agent\nkind\nname"), so batches skip them. */
  private knownAccess = new Set<string>();
  private droppedIntrospections = 0;
  /** When this replica last applied usage, and last summarised buckets (an idle replica does so rarely). */
  private lastAppliedAt = 0;
  private lastTrailAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private next: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly sequencer: Sequencer,
    readonly options: SignalsOptions = DEFAULT_SIGNALS,
  ) {}

  private get bucketSeconds(): number {
    return Math.max(1, Math.round(this.options.bucketMs / 1000));
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.options.flushMs);
    this.timer.unref();
  }

  /** Counts one introspection; written by the next flush. Never waits, never throws. */
  countIntrospection(u: { agentId: string; reporter: string; audience: string; scope: string; outcome: string }): void {
    const key = `${u.agentId}\n${u.reporter}\n${u.audience}\n${u.scope}\n${u.outcome}`;
    const row = this.pending.get(key);
    const now = new Date();
    if (row) {
      row.n++;
      row.lastSeen = now;
    } else if (this.pending.size < this.options.maxPending) {
      this.pending.set(key, { ...u, source: "introspect", n: 1, firstSeen: now, lastSeen: now });
    } else {
      this.droppedIntrospections++;
    }
  }

  /**
   * Writes Introspect's counts and summarises closed buckets into the log. One run at a time; a
   * call made during a run is served by the next one (which sees everything counted before it).
   */
  flush(): Promise<void> {
    if (!this.next) {
      this.next = this.chain.then(() => {
        this.next = undefined;
        return this.runFlush();
      });
      this.chain = this.next.catch(() => undefined);
    }
    return this.next;
  }

  private async runFlush(): Promise<void> {
    const rows = [...this.pending.values()];
    this.pending = new Map();
    if (this.droppedIntrospections > 0) {
      this.logger.warn({ dropped: this.droppedIntrospections }, "activity: introspection counts dropped (too many pending)");
      this.droppedIntrospections = 0;
    }
    if (rows.length > 0) {
      try {
        await this.apply(rows);
      } catch (err) {
        this.logger.warn({ err: (err as Error).message, lines: rows.length }, "activity: dropped introspection counts");
      }
    }
    // Summaries are due while this replica applies usage; otherwise a slow tick picks up what
    // other replicas left, so an idle replica does not write every second.
    const now = Date.now();
    if (now - this.lastAppliedAt > this.options.bucketMs + 10_000 && now - this.lastTrailAt < TRAIL_IDLE_MS) return;
    this.lastTrailAt = now;
    try {
      await this.logTrail();
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "activity: summarising usage into the log failed; retried next tick");
    }
  }

  /**
   * A resource server's usage batch. Statements, whatever the batch's size: one to resolve the
   * tokens, one to count, one for the reporter's drops (if any), then the evaluation's (see
   * evaluate). Records about tokens the reporter cannot see are never written, and are counted
   * exactly like unknown tokens.
   */
  async ingest(reporter: Reporter, records: readonly UsageInput[], dropped: number, now = Date.now()): Promise<IngestResult> {
    const result: IngestResult = { accepted: 0, rejected: 0, stale: 0 };
    const fresh = records.filter((r) => {
      const ok = r.firstSeen.getTime() >= now - MAX_AGE_MS && r.lastSeen.getTime() <= now + MAX_AHEAD_MS;
      if (!ok) result.stale++;
      return ok;
    });
    const ids = fresh.flatMap((r) => ("tokenId" in r.token ? [r.token.tokenId] : []));
    const hashes = fresh.flatMap((r) => ("sha256" in r.token ? [r.token.sha256] : []));
    const found = await findTokens(this.db, [...new Set(ids)], hashes);
    const byId = new Map(found.map((t) => [t.id, t]));
    const byHash = new Map(found.map((t) => [t.tokenHash.toString("base64"), t]));
    const rows = new Map<string, UsageRow>();
    for (const r of fresh) {
      const t = "tokenId" in r.token ? byId.get(r.token.tokenId) : byHash.get(r.token.sha256.toString("base64"));
      const visible =
        t !== undefined &&
        (reporter.audiences === undefined || (reporter.audiences.includes(r.audience) && t.audiences.some((a) => reporter.audiences!.includes(a))));
      if (!visible) {
        result.rejected++;
        continue;
      }
      result.accepted++;
      const key = `${t.agentId}\n${r.audience}\n${r.scope}\n${r.outcome}`;
      const row = rows.get(key);
      if (row) {
        row.n += r.count;
        if (r.firstSeen < row.firstSeen) row.firstSeen = r.firstSeen;
        if (r.lastSeen > row.lastSeen) row.lastSeen = r.lastSeen;
      } else {
        rows.set(key, {
          agentId: t.agentId,
          reporter: reporter.principal,
          source: "report",
          audience: r.audience,
          scope: r.scope,
          outcome: r.outcome,
          n: r.count,
          firstSeen: r.firstSeen,
          lastSeen: r.lastSeen,
        });
      }
    }
    if (dropped > 0) {
      await addDrops(this.db, reporter.principal, dropped, this.bucketSeconds);
      this.logger.warn({ reporter: reporter.principal, dropped }, "activity: a reporter dropped usage counts");
    }
    await this.apply([...rows.values()]);
    return result;
  }

  private async apply(rows: UsageRow[]): Promise<void> {
    if (rows.length === 0) return;
    rows.sort((a, b) => cmp(a.agentId, b.agentId) || cmp(a.reporter, b.reporter) || cmp(a.source, b.source) || cmp(a.audience, b.audience) || cmp(a.scope, b.scope) || cmp(a.outcome, b.outcome));
    // First uses of a scope or audience (allowed ones: a refusal is a violation, not a use).
    const access = new Map<string, { agentId: string; kind: "scope" | "audience"; name: string }>();
    for (const r of rows) {
      if (r.outcome !== "allowed") continue;
      for (const [kind, name] of [["scope", r.scope], ["audience", r.audience]] as const) {
        const k = `${r.agentId}\n${kind}\n${name}`;
        if (name !== "" && !this.knownAccess.has(k)) access.set(k, { agentId: r.agentId, kind, name });
      }
    }
    const firstUses = [...access.values()].sort((a, b) => cmp(a.agentId, b.agentId) || cmp(a.kind, b.kind) || cmp(a.name, b.name));
    await applyUsage(this.db, rows, this.bucketSeconds, firstUses);
    this.lastAppliedAt = Date.now();
    // Bounded: forgetting only costs a redundant (idempotent) insert later.
    if (this.knownAccess.size > 200_000) this.knownAccess.clear();
    for (const k of access.keys()) this.knownAccess.add(k);
    const violated = new Set(rows.filter((r) => r.outcome === "scope_not_granted").map((r) => r.agentId));
    await this.evaluate([...new Set(rows.map((r) => r.agentId))], violated);
  }

  /**
   * An incident report. A resource server names a token it can see (token id or the token);
   * any other token, seen or not, is "not found". Only an admin may name an agent directly.
   */
  async report(
    target: { agentId: string } | { tokenId: string } | { token: string },
    kind: ReportKind,
    detail: string,
    reporter: Reporter,
  ): Promise<Evaluation> {
    let agentId: string;
    if ("agentId" in target) {
      if (reporter.audiences !== undefined) throw new DomainError("invalid_argument", "agent_id: resource servers report by token_id or token");
      const agent = await findAgent(this.db, target.agentId);
      if (!agent) throw notFound(`agent ${target.agentId}`);
      agentId = agent.id;
    } else {
      const [t] = "tokenId" in target ? await findTokens(this.db, [target.tokenId], []) : await findTokens(this.db, [], [hashSecret(target.token)]);
      if (!t || (reporter.audiences !== undefined && !t.audiences.some((a) => reporter.audiences!.includes(a)))) throw notFound("token");
      agentId = t.agentId;
    }
    await this.db.transaction().execute(async (tx) => {
      await insertReport(tx, { agentId, kind, detail, reportedBy: reporter.principal });
      await appendAuditEntry(tx, { kind: "activity.reported", agentId, actor: reporter.principal, reason: kind, details: { kind, detail } });
    });
    return (await this.evaluate([agentId])).get(agentId)!;
  }

  private scoreOf(s: AgentSignals): { score: number; factors: ReturnType<typeof trustScore>["factors"] } {
    const o = this.options;
    const horizonMs = o.windowMs * (1 + o.baselineWindows);
    // Resource servers' reports see what the SDK's cache hides; Introspect counts stand in until an agent has any.
    const reported = s.reportedRecent + s.reportedPrior > 0;
    const sinceFirst = s.firstUsage ? s.now.getTime() - o.windowMs - s.firstUsage.getTime() : 0;
    return trustScore({
      agentAgeMs: s.now.getTime() - s.createdAt.getTime(),
      windowMs: o.windowMs,
      horizonMs,
      minBaseline: o.minBaseline,
      requestsRecent: reported ? s.reportedRecent : s.introspectedRecent,
      requestsPrior: reported ? s.reportedPrior : s.introspectedPrior,
      priorWindows: Math.min(o.baselineWindows, Math.max(1, Math.ceil(sinceFirst / o.windowMs))),
      requestSource: reported ? "reported usage" : "introspections",
      scopeViolations: s.scopeViolations,
      incidents: s.incidents,
      novel: s.novel,
      known: s.known,
    });
  }

  /** The current score, computed from the store; writes nothing. */
  async score(agentId: string): Promise<TrustScoreRecord> {
    const [s] = await readSignals(this.db, [agentId], this.options.windowMs / 1000, this.horizonSeconds());
    if (!s) throw notFound(`agent ${agentId}`);
    const { score, factors } = this.scoreOf(s);
    return { agentId, score, factors, computedAt: s.now };
  }

  private horizonSeconds(): number {
    return (this.options.windowMs * (1 + this.options.baselineWindows)) / 1000;
  }

  /**
   * Scores the agents once each and applies the policies: one statement to read every agent's
   * signals, one to record the scores that changed (if any did), one to read the policies, one per
   * scope-violation policy window (if any agent's violations grew); then a revocation per agent a
   * policy revokes. `violated`: the agents whose scope violations grew (undefined: all may have).
   */
  async evaluate(agentIds: readonly string[], violated?: ReadonlySet<string>): Promise<Map<string, Evaluation>> {
    const out = new Map<string, Evaluation>();
    // Independent reads, side by side on the pool: the agents' signals, and the policies with the
    // violation counts they need (only for agents whose count just grew: no other can newly trip).
    const [signals, { policies, violations }] = await Promise.all([
      readSignals(this.db, agentIds, this.options.windowMs / 1000, this.horizonSeconds()),
      this.policyInputs(violated === undefined ? agentIds : agentIds.filter((a) => violated.has(a))),
    ]);
    const changed: TrustScoreRecord[] = [];
    for (const s of signals) {
      const { score, factors } = this.scoreOf(s);
      const trust = { agentId: s.agentId, score, factors, computedAt: s.now };
      const stale = !s.lastScoredAt || s.now.getTime() - s.lastScoredAt.getTime() >= HISTORY_CADENCE_MS;
      // A revoked agent is done: its history ends with the score that got it revoked.
      if (s.status === "ACTIVE" && (s.lastScore === null || Math.abs(s.lastScore - score) >= 0.05 || stale)) changed.push(trust);
      out.set(s.agentId, { trust, revoked: s.status === "REVOKED", revokedBy: s.revokedBy ?? "" });
    }
    await insertTrustScores(this.db, changed);
    for (const s of signals) {
      if (s.status !== "ACTIVE") continue;
      const e = out.get(s.agentId)!;
      for (const p of policies) {
        const evidence = policyEvidence(p, e.trust.score, violations.get(p.windowSeconds ?? 0)?.get(s.agentId) ?? 0);
        if (!evidence) continue;
        const by = `policy:${p.name}`;
        await revoke(this.db, this.sequencer, { agentId: s.agentId }, `policy ${p.name}: ${evidence}`, by);
        this.logger.warn({ agentId: s.agentId, policy: p.name, evidence }, "policy revoked agent");
        out.set(s.agentId, { ...e, revoked: true, revokedBy: by });
        break;
      }
    }
    return out;
  }

  /** The policies, and scope violations per agent for each scope-violation policy window. */
  private async policyInputs(agentIds: readonly string[]) {
    const policies = await listPolicies(this.db);
    const violations = new Map<number, Map<string, number>>();
    if (agentIds.length > 0) {
      for (const p of policies) {
        const w = p.windowSeconds ?? 0;
        if (p.kind === "scope_violations" && !violations.has(w)) violations.set(w, await countScopeViolations(this.db, agentIds, w));
      }
    }
    return { policies, violations };
  }

  /** Summarises closed buckets into the transparency log, one entry per agent, reporter and bucket. */
  async logTrail(): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      const groups = await claimClosedBuckets(tx, this.bucketSeconds, TRAIL_GRACE_SECONDS, 10);
      if (!groups) return 0;
      for (const g of groups) {
        await appendAuditEntry(tx, {
          kind: "activity.usage",
          agentId: g.agentId,
          actor: g.reporter,
          details: {
            bucket_start: g.bucket.toISOString(),
            bucket_seconds: this.bucketSeconds,
            first_seen: g.firstSeen.toISOString(),
            last_seen: g.lastSeen.toISOString(),
            total: g.total,
            counts: g.counts,
          },
        });
      }
      return groups.length;
    });
  }

  /** An agent's timeline: usage summaries, score changes, policy decisions, reports, issuance and the kill. */
  async timeline(agentId: string, since: Date, until: Date, limit: number): Promise<TimelineEvent[]> {
    if (!(await findAgent(this.db, agentId))) throw notFound(`agent ${agentId}`);
    // Summaries are logged after their bucket closes: look a little past `until` for them.
    const slack = this.options.bucketMs + TRAIL_GRACE_SECONDS * 1000 + 10 * this.options.flushMs;
    const [entries, scores] = await Promise.all([
      listAuditEntries(this.db, { agentId, since, until: new Date(until.getTime() + slack), fromSeq: 0n, limit: 10 * limit }),
      listTrustScores(this.db, { agentId, since, until, limit }),
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

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
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

function usageLine(d: Record<string, unknown>, reporter: string): string {
  const counts = (d.counts as { scope: string; audience: string; outcome: string; source: string; count: number }[]) ?? [];
  const parts = counts.map((c) => `${c.source === "introspect" ? "introspected " : ""}${c.scope || "-"}@${c.audience || "-"} ${c.outcome} ${c.count}`);
  return `${String(d.total)} request(s) via ${reporter}: ${parts.join(", ")}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
