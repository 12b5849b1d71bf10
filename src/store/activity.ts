import { sql } from "kysely";
import type { Db, TrustFactorRow } from "./database.js";

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

export type Counter = "introspections" | "scope_violations" | "incidents";

/** Adds to per-minute counters, many agents in one statement. */
export async function addActivity(db: Db, counter: Counter, counts: { agentId: string; minute: Date; n: number }[]): Promise<void> {
  if (counts.length === 0) return;
  const col = sql.ref(counter);
  await sql`
    insert into agent_activity (agent_id, minute, ${col})
    select * from unnest(${counts.map((c) => c.agentId)}::text[], ${counts.map((c) => c.minute)}::timestamptz[], ${counts.map((c) => c.n)}::bigint[])
    on conflict (agent_id, minute) do update set ${col} = agent_activity.${col} + excluded.${col}`.execute(db);
}

export async function insertReport(db: Db, r: { agentId: string; kind: string; detail: string; reportedBy: string }): Promise<void> {
  await db.insertInto("activity_reports").values({ agent_id: r.agentId, kind: r.kind, detail: r.detail, reported_by: r.reportedBy }).execute();
}

export async function countReports(db: Db, agentId: string, kind: string, sinceSeconds: number): Promise<number> {
  const row = await db
    .selectFrom("activity_reports")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("agent_id", "=", agentId)
    .where("kind", "=", kind)
    .where("at", ">", sql<Date>`now() - ${sinceSeconds} * interval '1 second'`)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export interface ActivityWindow {
  /** Last 24 hours. */
  introspections24h: number;
  scopeViolations24h: number;
  incidents24h: number;
  /** Introspections in the last hour, and in the 23 hours before it. */
  introspectionsLastHour: number;
  introspectionsPrior23h: number;
}

export async function activityWindow(db: Db, agentId: string): Promise<ActivityWindow> {
  const { rows } = await sql<Record<keyof ActivityWindow, string>>`
    select
      coalesce(sum(introspections), 0) as "introspections24h",
      coalesce(sum(scope_violations), 0) as "scopeViolations24h",
      coalesce(sum(incidents), 0) as "incidents24h",
      coalesce(sum(introspections) filter (where minute >= now() - interval '1 hour'), 0) as "introspectionsLastHour",
      coalesce(sum(introspections) filter (where minute < now() - interval '1 hour'), 0) as "introspectionsPrior23h"
    from agent_activity
    where agent_id = ${agentId} and minute >= now() - interval '24 hours'`.execute(db);
  const r = rows[0]!;
  return {
    introspections24h: Number(r.introspections24h),
    scopeViolations24h: Number(r.scopeViolations24h),
    incidents24h: Number(r.incidents24h),
    introspectionsLastHour: Number(r.introspectionsLastHour),
    introspectionsPrior23h: Number(r.introspectionsPrior23h),
  };
}

export interface TrustScoreRecord {
  agentId: string;
  score: number;
  factors: TrustFactorRow[];
  computedAt: Date;
}

export async function insertTrustScore(db: Db, s: { agentId: string; score: number; factors: TrustFactorRow[] }): Promise<TrustScoreRecord> {
  const row = await db
    .insertInto("trust_scores")
    .values({ agent_id: s.agentId, score: s.score, factors: JSON.stringify(s.factors) })
    .returning(["computed_at"])
    .executeTakeFirstOrThrow();
  return { ...s, computedAt: row.computed_at };
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
