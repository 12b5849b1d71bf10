import { sql } from "kysely";
import type { Db, Tx, TrustFactorRow } from "./database.js";

/** Records a nonce once; false when it was seen before (a replay). Drops the agent's expired ones. */
export async function useNonce(db: Db, agentId: string, nonce: string, expiresAt: Date): Promise<boolean> {
  await db.deleteFrom("agent_nonces").where("agent_id", "=", agentId).where("expires_at", "<", sql<Date>`now()`).execute();
  const row = await db
    .insertInto("agent_nonces")
    .values({ agent_id: agentId, nonce, expires_at: expiresAt })
    .onConflict((oc) => oc.columns(["agent_id", "nonce"]).doNothing())
    .returning("nonce")
    .executeTakeFirst();
  return row !== undefined;
}

export async function insertReport(db: Db, r: { agentId: string; kind: string; detail: string; reportedBy: string }): Promise<void> {
  await db.insertInto("activity_reports").values({ agent_id: r.agentId, kind: r.kind, detail: r.detail, reported_by: r.reportedBy }).execute();
}

/** A token as a usage report may name it: its agent, and what it holds, to check the report against. */
export interface ReportedToken {
  id: string;
  tokenHash: Buffer;
  agentId: string;
  scopes: string[];
  audiences: string[];
}

/** Tokens by id or by hash, in one statement. */
export async function findTokens(db: Db, ids: readonly string[], hashes: readonly Buffer[]): Promise<ReportedToken[]> {
  if (ids.length === 0 && hashes.length === 0) return [];
  const { rows } = await sql<{ id: string; token_hash: Buffer; agent_id: string; scopes: string[]; audiences: string[] }>`
    select id, token_hash, agent_id, scopes, audiences from tokens
    where id = any(${ids as string[]}::text[]) or token_hash = any(${hashes as Buffer[]}::bytea[])`.execute(db);
  return rows.map((r) => ({ id: r.id, tokenHash: r.token_hash, agentId: r.agent_id, scopes: r.scopes, audiences: r.audiences }));
}

/**
 * Where a count comes from: a resource server's usage report (the SDK, the MCP guard), a gateway's
 * decision (nginx auth_request, Envoy ext_authz), or a resource server's Introspect.
 */
export type UsageSource = "report" | "gateway" | "introspect";

/**
 * Distinct lines (source, audience, scope, operation, outcome) one reporter may add to one agent's
 * bucket. Lines past it are folded into one line per source and outcome under these names, which
 * no scope or audience can have (they hold a space), and no operation: the counts stay, only the
 * names are lost. Folded lines are not counted against the cap.
 */
export const LINES_PER_BUCKET = 100;
export const OTHER_SCOPES = "(other scopes)";
export const OTHER_AUDIENCES = "(other audiences)";

/** One line of usage, already attributed to an agent and unique on its key within a batch. */
export interface UsageRow {
  agentId: string;
  reporter: string;
  source: UsageSource;
  audience: string;
  scope: string;
  operation: string;
  outcome: string;
  n: number;
  firstSeen: Date;
  lastSeen: Date;
}

/**
 * Adds a batch to the current time bucket (the server's clock) and records first uses of scopes
 * and audiences: one statement, whatever the batch's size. A reporter's new lines past
 * LINES_PER_BUCKET in an agent's bucket are folded (see there). Rows must be unique on
 * (agent, reporter, source, audience, scope, operation, outcome); they are written sorted, so concurrent
 * batches lock rows in the same order.
 */
export async function applyUsage(
  db: Db,
  rows: readonly UsageRow[],
  bucketSeconds: number,
  /** First uses to record ("scope" or "audience", name), unique; the caller may leave out ones it knows are recorded. */
  access: readonly { agentId: string; kind: "scope" | "audience"; name: string }[],
): Promise<void> {
  if (rows.length === 0) return;
  const col = <K extends keyof UsageRow>(k: K) => rows.map((r) => r[k]);
  const agents = [...new Set(col("agentId"))];
  await sql`
    with r as (
      select * from unnest(
        ${col("agentId")}::text[], ${col("reporter")}::text[], ${col("source")}::text[], ${col("audience")}::text[],
        ${col("scope")}::text[], ${col("operation")}::text[], ${col("outcome")}::text[], ${col("n")}::bigint[],
        ${col("firstSeen")}::timestamptz[], ${col("lastSeen")}::timestamptz[]
      ) as r(agent_id, reporter, source, audience, scope, operation, outcome, n, first_seen, last_seen)
    ),
    b as (select date_bin(${bucketSeconds} * interval '1 second', now(), timestamptz 'epoch') as bucket),
    lines as (
      select u.agent_id, u.reporter, count(*) as lines from usage_counts u, b
      where u.agent_id = any(${agents}::text[]) and u.bucket = b.bucket and u.scope <> ${OTHER_SCOPES}
      group by u.agent_id, u.reporter
    ),
    numbered as (
      select r.*, b.bucket, u.agent_id is null and r.scope <> ${OTHER_SCOPES} as new,
        coalesce(l.lines, 0) + row_number() over (
          partition by r.agent_id, r.reporter, u.agent_id is null and r.scope <> ${OTHER_SCOPES}
          order by r.source, r.audience, r.scope, r.operation, r.outcome) as line
      from r cross join b
      left join usage_counts u on (u.agent_id, u.bucket, u.reporter, u.source, u.audience, u.scope, u.operation, u.outcome)
        = (r.agent_id, b.bucket, r.reporter, r.source, r.audience, r.scope, r.operation, r.outcome)
      left join lines l on l.agent_id = r.agent_id and l.reporter = r.reporter
    ),
    folded as (
      select agent_id, bucket, reporter, source,
        case when new and line > ${LINES_PER_BUCKET} then ${OTHER_AUDIENCES} else audience end as audience,
        case when new and line > ${LINES_PER_BUCKET} then ${OTHER_SCOPES} else scope end as scope,
        case when new and line > ${LINES_PER_BUCKET} then '' else operation end as operation,
        outcome, sum(n) as n, min(first_seen) as first_seen, max(last_seen) as last_seen
      from numbered group by 1, 2, 3, 4, 5, 6, 7, 8
    ),
    counted as (
      insert into usage_counts (agent_id, bucket, reporter, source, audience, scope, operation, outcome, n, first_seen, last_seen)
      select * from folded order by agent_id, reporter, source, audience, scope, operation, outcome
      on conflict (agent_id, bucket, reporter, source, audience, scope, operation, outcome) do update set
        n = usage_counts.n + excluded.n,
        first_seen = least(usage_counts.first_seen, excluded.first_seen),
        last_seen = greatest(usage_counts.last_seen, excluded.last_seen)
    )
    insert into agent_access (agent_id, kind, name)
    select * from unnest(${access.map((a) => a.agentId)}::text[], ${access.map((a) => a.kind)}::text[], ${access.map((a) => a.name)}::text[])
    on conflict do nothing`.execute(db);
}

export async function addDrops(db: Db, reporter: string, n: number, bucketSeconds: number): Promise<void> {
  await sql`
    insert into usage_drops (reporter, bucket, n)
    values (${reporter}, date_bin(${bucketSeconds} * interval '1 second', now(), timestamptz 'epoch'), ${n})
    on conflict (reporter, bucket) do update set n = usage_drops.n + excluded.n`.execute(db);
}

/** What the trust score of one agent is computed from, as counted in the store. */
export interface AgentSignals {
  agentId: string;
  createdAt: Date;
  status: "ACTIVE" | "REVOKED";
  revokedBy: string | null;
  reportedRecent: number;
  reportedPrior: number;
  introspectedRecent: number;
  introspectedPrior: number;
  /** Earliest bucket with any usage within the horizon. */
  firstUsage: Date | null;
  scopeViolations: number;
  incidents: number;
  novel: string[];
  known: number;
  lastScore: number | null;
  lastScoredAt: Date | null;
  /** The database's clock, which every window here is measured against. */
  now: Date;
}

/**
 * Everything the trust score needs for many agents, in one statement: usage in the recent window
 * and before it (within the horizon), scope violations, incidents, first uses, the last recorded score.
 */
export async function readSignals(db: Db, agentIds: readonly string[], windowSeconds: number, horizonSeconds: number): Promise<AgentSignals[]> {
  if (agentIds.length === 0) return [];
  const ids = agentIds as string[];
  const recent = sql`now() - ${windowSeconds} * interval '1 second'`;
  const horizon = sql`now() - ${horizonSeconds} * interval '1 second'`;
  // Set-based (one index scan per table for all the agents), not a subquery per agent.
  const { rows } = await sql<Record<string, unknown>>`
    with u as (
      select agent_id,
        sum(n) filter (where source <> 'introspect' and bucket >= ${recent}) as reported_recent,
        sum(n) filter (where source <> 'introspect' and bucket < ${recent}) as reported_prior,
        sum(n) filter (where source = 'introspect' and bucket >= ${recent}) as introspected_recent,
        sum(n) filter (where source = 'introspect' and bucket < ${recent}) as introspected_prior,
        sum(n) filter (where outcome = 'scope_not_granted') as violations,
        min(bucket) as first_usage
      from usage_counts where agent_id = any(${ids}::text[]) and bucket >= ${horizon}
      group by agent_id
    ), rep as (
      select agent_id,
        count(*) filter (where kind = 'anomalous_request') as incidents,
        count(*) filter (where kind = 'scope_violation') as reported_violations
      from activity_reports where agent_id = any(${ids}::text[]) and at >= ${horizon}
      group by agent_id
    ), acc as (
      select agent_id,
        array_agg(kind || ':' || name order by first_seen, kind, name) filter (where first_seen >= ${recent}) as novel,
        count(*) filter (where first_seen < ${recent}) as known
      from agent_access where agent_id = any(${ids}::text[])
      group by agent_id
    )
    select a.id, a.created_at, a.status, a.revoked_by, now() as now,
      coalesce(u.reported_recent, 0) as reported_recent, coalesce(u.reported_prior, 0) as reported_prior,
      coalesce(u.introspected_recent, 0) as introspected_recent, coalesce(u.introspected_prior, 0) as introspected_prior,
      u.first_usage, coalesce(u.violations, 0) as violations,
      coalesce(rep.incidents, 0) as incidents, coalesce(rep.reported_violations, 0) as reported_violations,
      coalesce(acc.novel, '{}') as novel, coalesce(acc.known, 0) as known,
      last.score as last_score, last.computed_at as last_at
    from agents a
    left join u on u.agent_id = a.id
    left join rep on rep.agent_id = a.id
    left join acc on acc.agent_id = a.id
    left join lateral (
      select score, computed_at from trust_scores where agent_id = a.id order by computed_at desc limit 1
    ) last on true
    where a.id = any(${ids}::text[])`.execute(db);
  return rows.map((r) => ({
    agentId: r.id as string,
    createdAt: r.created_at as Date,
    status: r.status as "ACTIVE" | "REVOKED",
    revokedBy: r.revoked_by as string | null,
    reportedRecent: Number(r.reported_recent),
    reportedPrior: Number(r.reported_prior),
    introspectedRecent: Number(r.introspected_recent),
    introspectedPrior: Number(r.introspected_prior),
    firstUsage: r.first_usage as Date | null,
    scopeViolations: Number(r.violations) + Number(r.reported_violations),
    incidents: Number(r.incidents),
    novel: r.novel as string[],
    known: Number(r.known),
    lastScore: r.last_score === null ? null : Number(r.last_score),
    lastScoredAt: r.last_at as Date | null,
    now: r.now as Date,
  }));
}

/** Scope violations per agent within a window (reported, introspected, reported by hand): one statement. */
export async function countScopeViolations(db: Db, agentIds: readonly string[], windowSeconds: number): Promise<Map<string, number>> {
  const { rows } = await sql<{ agent_id: string; n: string }>`
    select agent_id, sum(n) as n from (
      select agent_id, n from usage_counts
      where agent_id = any(${agentIds as string[]}::text[]) and outcome = 'scope_not_granted'
        and last_seen >= now() - ${windowSeconds} * interval '1 second' and bucket >= now() - ${windowSeconds} * interval '1 second' - interval '1 day'
      union all
      select agent_id, 1 from activity_reports
      where agent_id = any(${agentIds as string[]}::text[]) and kind = 'scope_violation' and at >= now() - ${windowSeconds} * interval '1 second'
    ) v group by agent_id`.execute(db);
  return new Map(rows.map((r) => [r.agent_id, Number(r.n)]));
}

export interface TrustScoreRecord {
  agentId: string;
  score: number;
  factors: TrustFactorRow[];
  computedAt: Date;
}

/** Adds scores to the history: one statement for any number of agents. */
export async function insertTrustScores(db: Db, scores: readonly Omit<TrustScoreRecord, "computedAt">[]): Promise<void> {
  if (scores.length === 0) return;
  await sql`
    insert into trust_scores (agent_id, score, factors)
    select * from unnest(${scores.map((s) => s.agentId)}::text[], ${scores.map((s) => s.score)}::float8[], ${scores.map((s) => JSON.stringify(s.factors))}::jsonb[])`.execute(db);
}

export async function listTrustScores(
  db: Db,
  q: { agentId: string; since?: Date; until?: Date; limit: number },
): Promise<TrustScoreRecord[]> {
  let query = db.selectFrom("trust_scores").select(["agent_id", "score", "factors", "computed_at"]).where("agent_id", "=", q.agentId);
  if (q.since) query = query.where("computed_at", ">=", q.since);
  if (q.until) query = query.where("computed_at", "<", q.until);
  const rows = await query.orderBy("id").limit(q.limit).execute();
  return rows.map((r) => ({ agentId: r.agent_id, score: r.score, factors: r.factors, computedAt: r.computed_at }));
}

/** What one reporter saw one agent do in one bucket, not yet in the log. */
export interface UsageGroup {
  agentId: string;
  reporter: string;
  bucket: Date;
  firstSeen: Date;
  lastSeen: Date;
  total: number;
  /** Some of the bucket's counts were logged before: this continues its summary. */
  continued: boolean;
  counts: UsageCount[];
}

export type UsageCount = {
  audience: string;
  scope: string;
  /** Present when the reporter named what the requests did. */
  operation?: string;
  outcome: string;
  source: string;
  count: number;
};

/**
 * Takes the counts the log does not hold yet, of the buckets in [from, to) or of one agent, and
 * marks them logged, in the caller's transaction (which also appends the summaries, so both
 * commit together). Concurrent claims lock the same rows: each count is returned once.
 */
async function claimUnlogged(tx: Tx, which: { from: Date; to: Date } | { agentId: string }): Promise<UsageGroup[]> {
  const where = "agentId" in which ? sql`agent_id = ${which.agentId}` : sql`bucket >= ${which.from} and bucket < ${which.to}`;
  const { rows } = await sql<{
    agent_id: string;
    reporter: string;
    bucket: Date;
    first_seen: Date;
    last_seen: Date;
    total: string;
    continued: boolean;
    counts: UsageCount[];
  }>`
    with c as (
      select agent_id, bucket, reporter, source, audience, scope, operation, outcome, n, logged, first_seen, last_seen
      from usage_counts where ${where} and n > logged
      order by agent_id, bucket, reporter, source, audience, scope, operation, outcome
      for update
    ), marked as (
      update usage_counts u set logged = c.n from c
      where (u.agent_id, u.bucket, u.reporter, u.source, u.audience, u.scope, u.operation, u.outcome)
        = (c.agent_id, c.bucket, c.reporter, c.source, c.audience, c.scope, c.operation, c.outcome)
    )
    select agent_id, reporter, bucket, min(first_seen) as first_seen, max(last_seen) as last_seen,
      sum(n - logged) as total, bool_or(logged > 0) as continued,
      -- An operation is named only when there is one: lines without keep the shape they always had.
      jsonb_agg(jsonb_build_object('audience', audience, 'scope', scope, 'outcome', outcome, 'source', source, 'count', n - logged)
                  || case when operation = '' then '{}'::jsonb else jsonb_build_object('operation', operation) end
                order by audience, scope, operation, outcome, source) as counts
    from c group by agent_id, reporter, bucket order by bucket, agent_id, reporter`.execute(tx);
  return rows.map((r) => ({
    agentId: r.agent_id,
    reporter: r.reporter,
    bucket: r.bucket,
    firstSeen: r.first_seen,
    lastSeen: r.last_seen,
    total: Number(r.total),
    continued: r.continued,
    counts: r.counts.map((c) => ({ ...c, count: Number(c.count) })),
  }));
}

/**
 * Claims what the log lacks of the oldest closed buckets (at most `maxBuckets` past the trail's
 * head, and only buckets that ended more than `graceSeconds` ago, so in-flight batches have
 * committed), and moves the head past them. The bucket before the head is looked at again, for
 * counts a slow batch added after it was summarised. A replica already doing it is skipped, not
 * waited for. undefined: nothing due, or another replica holds the head.
 */
export async function claimClosedBuckets(tx: Tx, bucketSeconds: number, graceSeconds: number, maxBuckets: number): Promise<UsageGroup[] | undefined> {
  const head = await sql<{ logged_before: Date; cutoff: Date }>`
    select logged_before,
      least(date_bin(${bucketSeconds} * interval '1 second', now() - ${graceSeconds} * interval '1 second', timestamptz 'epoch'),
            logged_before + ${maxBuckets * bucketSeconds} * interval '1 second') as cutoff
    from usage_trail_head for update skip locked`.execute(tx);
  const h = head.rows[0];
  if (!h || h.cutoff <= h.logged_before) return undefined;
  const groups = await claimUnlogged(tx, { from: new Date(h.logged_before.getTime() - bucketSeconds * 1000), to: h.cutoff });
  await sql`update usage_trail_head set logged_before = ${h.cutoff}`.execute(tx);
  return groups;
}

/** Whether the log lacks any count of the agent (one index range read). */
export async function hasUnlogged(db: Db, agentId: string): Promise<boolean> {
  const { rows } = await sql`select 1 from usage_counts where agent_id = ${agentId} and n > logged limit 1`.execute(db);
  return rows.length > 0;
}

/** Claims every count of one agent the log lacks, its open buckets included (a kill). */
export function claimAgentUsage(tx: Tx, agentId: string): Promise<UsageGroup[]> {
  return claimUnlogged(tx, { agentId });
}

/**
 * Forgets usage past what any judgement looks at, in one statement per table: counts older than
 * the trust horizon (refusals for a scope are kept for the longest policy window), first uses not
 * repeated within the horizon, reporters' drops. Counts the log does not hold yet are kept.
 */
export async function pruneUsage(db: Db, horizonSeconds: number, violationSeconds: number): Promise<{ counts: number; access: number }> {
  const horizon = sql`now() - ${horizonSeconds} * interval '1 second'`;
  const counts = await sql`
    delete from usage_counts
    where bucket < ${horizon} and n = logged
      and (outcome <> 'scope_not_granted' or bucket < now() - ${violationSeconds} * interval '1 second')`.execute(db);
  await sql`delete from usage_drops where bucket < ${horizon}`.execute(db);
  // A scope or audience counts as known while the agent used it within the horizon.
  const access = await sql`
    delete from agent_access a where a.first_seen < ${horizon} and not exists (
      select 1 from usage_counts u
      where u.agent_id = a.agent_id and u.bucket >= ${horizon} and u.outcome = 'allowed'
        and (case a.kind when 'scope' then u.scope else u.audience end) = a.name)`.execute(db);
  return { counts: Number(counts.numAffectedRows ?? 0n), access: Number(access.numAffectedRows ?? 0n) };
}
