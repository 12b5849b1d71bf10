import type { Logger } from "pino";
import type { Db } from "../store/database.js";
import type { Sequencer } from "../store/sequencer.js";
import {
  addDrops,
  applyUsage,
  findTokens,
  insertReport,
  insertTrustScores,
  LINES_PER_BUCKET,
  OTHER_AUDIENCES,
  OTHER_SCOPES,
  pruneUsage,
  readSignals,
  type AgentSignals,
  type ReportedToken,
  type TrustScoreRecord,
  type UsageRow,
  type UsageSource,
} from "../store/activity.js";
import { findAgent } from "../store/agents.js";
import { DomainError, notFound } from "./errors.js";
import { revoke } from "./revocation.js";
import { appendAuditEntry, auditedTransaction } from "../audit/append.js";
import { hashSecret } from "./ids.js";
import { trustScore } from "./trust.js";
import { MAX_WINDOW_MS, policyInputs, trippedPolicy } from "./policies.js";
import { timeline, Trail, type TimelineEvent } from "./trail.js";

export type { TimelineEvent };

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
  /** The audience the request was for; "" for a resource_server key: the one the token and the key share. */
  audience: string;
  scope: string;
  /** What the requests did, in the reporter's words ("tools/call countdown"); "" when not named. */
  operation: string;
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
  /** How often gates' counts are written and closed buckets summarised into the log. */
  flushMs: number;
  /** Gates' pending usage lines, at most; beyond it counts are dropped (and logged). */
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
/** How often an idle replica looks for buckets left unsummarised (by a replica that stopped). */
const TRAIL_IDLE_MS = 60_000;
/** How often usage past every window is forgotten. */
const PRUNE_MS = 600_000;

/** A gate's decision about one request, counted in memory until the next flush. */
interface Sighting {
  reporter: Reporter;
  source: UsageSource;
  input: UsageInput;
}

/**
 * Behaviour signals in and trust decisions out. Every gate's decisions (resource servers' usage
 * reports, gateways' checks, resource servers' Introspect) go through one path, `ingest`: checked
 * against the token they name, then applied as one batch in a bounded number of statements, and
 * each agent the batch touches is scored and checked against the policies once. Gates inside this
 * server count in memory (`countDecision`) and are ingested once per flushMs by one loop, so reads
 * never turn into concurrent writes. Reading a score writes nothing.
 */
export class ActivityTracker {
  private pending = new Map<string, Sighting>();
  /** Scopes and audiences known to be recorded as used ("agent\nkind\nname"), so batches skip them. */
  private knownAccess = new Set<string>();
  private droppedDecisions = 0;
  /** When this replica last applied usage, and last summarised buckets (an idle replica does so rarely). */
  private lastAppliedAt = 0;
  private lastTrailAt = 0;
  private lastPruneAt = 0;
  private readonly trail: Trail;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private next: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly sequencer: Sequencer,
    readonly options: SignalsOptions = DEFAULT_SIGNALS,
  ) {
    this.trail = new Trail(db, sequencer, logger, this.bucketSeconds);
  }

  private get bucketSeconds(): number {
    return Math.max(1, Math.round(this.options.bucketMs / 1000));
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.options.flushMs);
    this.timer.unref();
  }

  /** Counts one gate decision; ingested by the next flush. Never waits, never throws. */
  countDecision(reporter: Reporter, source: "gateway" | "introspect", u: Omit<UsageInput, "count" | "firstSeen" | "lastSeen">): void {
    const token = "tokenId" in u.token ? u.token.tokenId : u.token.sha256.toString("base64");
    const key = `${reporter.principal}\n${source}\n${token}\n${u.audience}\n${u.scope}\n${u.operation}\n${u.outcome}`;
    const s = this.pending.get(key);
    const now = new Date();
    if (s) {
      s.input.count++;
      s.input.lastSeen = now;
    } else if (this.pending.size < this.options.maxPending) {
      this.pending.set(key, { reporter, source, input: { ...u, count: 1, firstSeen: now, lastSeen: now } });
    } else {
      this.droppedDecisions++;
    }
  }

  /**
   * Ingests the gates' counts and summarises closed buckets into the log. One run at a time; a
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
    const sightings = [...this.pending.values()];
    this.pending = new Map();
    if (this.droppedDecisions > 0) {
      this.logger.warn({ dropped: this.droppedDecisions }, "activity: gate decisions dropped (too many pending)");
      this.droppedDecisions = 0;
    }
    if (sightings.length > 0) {
      try {
        await this.apply(await this.attribute(sightings, { accepted: 0, rejected: 0, stale: 0 }));
      } catch (err) {
        this.logger.warn({ err: (err as Error).message, lines: sightings.length }, "activity: dropped gate decisions");
      }
    }
    const now = Date.now();
    if (now - this.lastPruneAt >= PRUNE_MS) {
      this.lastPruneAt = now;
      await this.prune().catch((err: Error) => this.logger.warn({ err: err.message }, "activity: pruning old usage failed; retried later"));
    }
    // Summaries are due while this replica applies usage; otherwise a slow tick picks up what
    // other replicas left, so an idle replica does not write every second.
    if (now - this.lastAppliedAt > this.options.bucketMs + 10_000 && now - this.lastTrailAt < TRAIL_IDLE_MS) return;
    this.lastTrailAt = now;
    try {
      await this.trail.logClosed();
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "activity: summarising usage into the log failed; retried next tick");
    }
  }

  /** Forgets usage no window looks at any more (see pruneUsage). */
  async prune(): Promise<void> {
    const r = await pruneUsage(this.db, this.horizonSeconds(), Math.max(this.horizonSeconds(), MAX_WINDOW_MS / 1000));
    // Forgotten first uses must be recorded again when they recur.
    if (r.access > 0) this.knownAccess.clear();
    if (r.counts + r.access > 0) this.logger.info(r, "activity: pruned usage past the horizon");
  }

  /**
   * An agent was killed: what gates counted of it so far reaches the log now, not when its bucket
   * closes. Counts that arrive later are logged as a further entry when their bucket closes.
   */
  async killed(agentId: string): Promise<void> {
    if (this.pending.size > 0) await this.flush();
    await this.sealTrail(agentId);
  }

  /** The kill's trail, for both kinds of kill; a failure leaves the buckets to the regular path. */
  private async sealTrail(agentId: string): Promise<void> {
    try {
      await this.trail.seal(agentId);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, agentId }, "activity: sealing a killed agent's trail failed; its buckets are logged when they close");
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
    const rows = await this.attribute(
      fresh.map((input) => ({ reporter, source: "report", input })),
      result,
    );
    if (dropped > 0) {
      await addDrops(this.db, reporter.principal, dropped, this.bucketSeconds);
      this.logger.warn({ reporter: reporter.principal, dropped }, "activity: a reporter dropped usage counts");
    }
    await this.apply(rows);
    return result;
  }

  /**
   * Resolves each sighting's token (one statement) and keeps those its reporter may see and that
   * agree with the token: ALLOWED only for a scope the token holds and an audience it lists, a
   * scope refusal only for one it lacks, an audience refusal only for one it does not list. Lines
   * are summed per agent and key; past LINES_PER_BUCKET distinct lines for one agent, the rest are
   * folded as applyUsage folds them.
   */
  private async attribute(sightings: readonly Sighting[], result: IngestResult): Promise<UsageRow[]> {
    const ids = sightings.flatMap((s) => ("tokenId" in s.input.token ? [s.input.token.tokenId] : []));
    const hashes = sightings.flatMap((s) => ("sha256" in s.input.token ? [s.input.token.sha256] : []));
    const found = await findTokens(this.db, [...new Set(ids)], hashes);
    const byId = new Map(found.map((t) => [t.id, t]));
    const byHash = new Map(found.map((t) => [t.tokenHash.toString("base64"), t]));
    const rows = new Map<string, UsageRow>();
    const lines = new Map<string, number>();
    for (const { reporter, source, input: r } of sightings) {
      const t = "tokenId" in r.token ? byId.get(r.token.tokenId) : byHash.get(r.token.sha256.toString("base64"));
      const bound = reporter.audiences;
      const audience = r.audience === "" && bound && t ? (t.audiences.find((a) => bound.includes(a)) ?? "") : r.audience;
      const visible = t !== undefined && (bound === undefined || (bound.includes(audience) && t.audiences.some((a) => bound.includes(a))));
      if (!visible || !agrees(t, audience, r.scope, r.outcome)) {
        result.rejected++;
        continue;
      }
      result.accepted++;
      const exact = `${t.agentId}\n${reporter.principal}\n${source}\n${audience}\n${r.scope}\n${r.operation}\n${r.outcome}`;
      const fold = !rows.has(exact) && (lines.get(t.agentId) ?? 0) >= LINES_PER_BUCKET;
      const line = fold ? { audience: OTHER_AUDIENCES, scope: OTHER_SCOPES, operation: "" } : { audience, scope: r.scope, operation: r.operation };
      const key = fold ? `${t.agentId}\n${reporter.principal}\n${source}\n${line.audience}\n${line.scope}\n\n${r.outcome}` : exact;
      const row = rows.get(key);
      if (row) {
        row.n += r.count;
        if (r.firstSeen < row.firstSeen) row.firstSeen = r.firstSeen;
        if (r.lastSeen > row.lastSeen) row.lastSeen = r.lastSeen;
        continue;
      }
      lines.set(t.agentId, (lines.get(t.agentId) ?? 0) + 1);
      rows.set(key, { agentId: t.agentId, reporter: reporter.principal, source, ...line, outcome: r.outcome, n: r.count, firstSeen: r.firstSeen, lastSeen: r.lastSeen });
    }
    return [...rows.values()];
  }

  private async apply(rows: UsageRow[]): Promise<void> {
    if (rows.length === 0) return;
    rows.sort((a, b) => cmp(a.agentId, b.agentId) || cmp(a.reporter, b.reporter) || cmp(a.source, b.source) || cmp(a.audience, b.audience) || cmp(a.scope, b.scope) || cmp(a.operation, b.operation) || cmp(a.outcome, b.outcome));
    // First uses of a scope or audience (allowed ones: a refusal is a violation, not a use).
    const access = new Map<string, { agentId: string; kind: "scope" | "audience"; name: string }>();
    for (const r of rows) {
      if (r.outcome !== "allowed") continue;
      for (const [kind, name] of [["scope", r.scope], ["audience", r.audience]] as const) {
        const k = `${r.agentId}\n${kind}\n${name}`;
        if (name !== "" && name !== OTHER_SCOPES && name !== OTHER_AUDIENCES && !this.knownAccess.has(k)) access.set(k, { agentId: r.agentId, kind, name });
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
    await auditedTransaction(this.db, this.sequencer, async (tx) => {
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
    // violation counts they need.
    const [signals, inputs] = await Promise.all([
      readSignals(this.db, agentIds, this.options.windowMs / 1000, this.horizonSeconds()),
      policyInputs(this.db, violated === undefined ? agentIds : agentIds.filter((a) => violated.has(a))),
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
      const tripped = trippedPolicy(inputs, s.agentId, e.trust.score);
      if (!tripped) continue;
      await revoke(this.db, this.sequencer, { agentId: s.agentId }, tripped.reason, tripped.by);
      this.logger.warn({ agentId: s.agentId, by: tripped.by, reason: tripped.reason }, "policy revoked agent");
      out.set(s.agentId, { ...e, revoked: true, revokedBy: tripped.by });
      // The batch that tripped it is applied: the trail up to the kill goes to the log now.
      await this.sealTrail(s.agentId);
    }
    return out;
  }

  /** An agent's timeline: usage summaries, score changes, policy decisions, reports, issuance and the kill. */
  async timeline(agentId: string, since: Date, until: Date, limit: number): Promise<TimelineEvent[]> {
    if (!(await findAgent(this.db, agentId))) throw notFound(`agent ${agentId}`);
    return timeline(this.db, this.options, agentId, since, until, limit);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

/** Whether a decision about this token could have been made: the reports that cannot are refused. */
function agrees(t: ReportedToken, audience: string, scope: string, outcome: string): boolean {
  switch (outcome) {
    case "allowed":
      return (scope === "" || t.scopes.includes(scope)) && (audience === "" || t.audiences.includes(audience));
    case "scope_not_granted":
      return scope !== "" && !t.scopes.includes(scope);
    case "audience_mismatch":
      return audience !== "" && !t.audiences.includes(audience);
    default:
      return true;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
