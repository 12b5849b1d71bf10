// The revocation feed's reads: numbered, committed rows of the revocations table. Writers (and the
// sequencer that numbers their rows) live in revocations.ts; nothing here writes except compaction.
import { sql } from "kysely";
import type { Db } from "./database.js";

/** One numbered event of the log, with what the feed needs to decide who may see it. */
export interface LogEvent {
  revision: bigint;
  tokenId: string | null;
  agentId: string;
  reason: string;
  revokedBy: string;
  revokedAt: Date;
  expiresAt: Date | null;
  /**
   * Token events: the token's audiences. Agent events: every audience any token of the agent was
   * issued for. Read from `tokens` when the event is read, for the feed's audience filter.
   */
  audiences: string[];
}

type LogRow = {
  revision: string | null;
  token_id: string | null;
  agent_id: string;
  reason: string;
  revoked_by: string;
  revoked_at: Date;
  expires_at: Date | null;
  audiences: string[] | null;
  compacted: string;
  head: string;
};

export interface LogPage {
  events: LogEvent[];
  /** Compaction has removed events at or below this revision (read in the same snapshot). */
  compactedThrough: bigint;
  /** The last revision committed in that snapshot: a short page has every event up to it. */
  head: bigint;
}

// The compaction floor and the head as scalar subqueries, never as a table in the join: the
// planner does not know that feed_compaction has one row (it guesses thousands when the table was
// never analyzed), and multiplied through the page that guess priced a 1 ms read high enough for
// PostgreSQL's JIT, which then spent 300-800 ms compiling it (issue 28). The head is the highest
// numbered row (the sequencer numbers gap-free, in commit order), or the compaction floor when
// compaction removed the newest rows.
const BOUNDS = sql`select (select revision from feed_compaction) as compacted`;
const HEAD = sql`greatest(b.compacted, coalesce((select max(revision) from revocations), 0))`;

/**
 * Events after `after`, oldest first, with the compaction floor and the head from the same
 * snapshot: if the floor is above `after`, events in between may be gone and the page must not be
 * trusted as gap-free.
 */
export async function readRevocationsAfter(db: Db, after: bigint, limit: number): Promise<LogPage> {
  const { rows } = await sql<LogRow>`
    select r.revision, r.token_id, r.agent_id, r.reason, r.revoked_by, r.revoked_at, r.expires_at,
           (select t.audiences from tokens t where t.id = r.token_id) as audiences,
           b.compacted, ${HEAD} as head
    from (${BOUNDS}) b
    left join lateral (
      select * from revocations where revision > ${after.toString()}::bigint order by revision limit ${limit}
    ) r on true
    order by r.revision`.execute(db);
  const events: LogEvent[] = [];
  const agents = new Set<string>();
  for (const r of rows) {
    if (r.revision === null) continue;
    if (r.token_id === null) agents.add(r.agent_id);
    events.push({
      revision: BigInt(r.revision),
      tokenId: r.token_id,
      agentId: r.agent_id,
      reason: r.reason,
      revokedBy: r.revoked_by,
      revokedAt: r.revoked_at,
      expiresAt: r.expires_at,
      audiences: r.audiences ?? [],
    });
  }
  if (agents.size > 0) {
    // Agent events are few: their audiences in a second statement, for just those agents. The
    // agent's tokens cannot change after its event committed (a revoked agent gets no new
    // token), so the later snapshot reads the same set.
    const audiences = await agentAudiences(db, [...agents]);
    for (const e of events) if (e.tokenId === null) e.audiences = audiences.get(e.agentId) ?? [];
  }
  return { events, compactedThrough: BigInt(rows[0]!.compacted), head: BigInt(rows[0]!.head) };
}

/** Every audience any token of each agent was issued for. */
async function agentAudiences(db: Db, agentIds: string[]): Promise<Map<string, string[]>> {
  const { rows } = await sql<{ agent_id: string; audiences: string[] }>`
    select t.agent_id, array_agg(distinct a) as audiences
    from tokens t, unnest(t.audiences) a
    where t.agent_id = any(${agentIds}::text[])
    group by t.agent_id`.execute(db);
  return new Map(rows.map((r) => [r.agent_id, r.audiences]));
}

/** The last revision committed and the compaction floor, from one snapshot. */
export async function logBounds(db: Db): Promise<{ head: bigint; compactedThrough: bigint }> {
  const { rows } = await sql<{ head: string; compacted: string }>`
    select ${HEAD} as head, b.compacted from (${BOUNDS}) b`.execute(db);
  return { head: BigInt(rows[0]!.head), compactedThrough: BigInt(rows[0]!.compacted) };
}

/**
 * Drops token events whose token has expired (the revocation no longer matters) and that are older
 * than minAgeMs (so a briefly disconnected watcher resumes instead of replaying). Agent events are
 * kept forever. Raises the compaction floor to the highest revision removed. Returns rows removed.
 */
export async function compactRevocations(db: Db, minAgeMs: number, batch = 5000): Promise<number> {
  let total = 0;
  for (;;) {
    const { rows } = await sql<{ n: string }>`
      with d as (
        delete from revocations where revision in (
          select revision from revocations
          where token_id is not null and expires_at < now()
            and revoked_at < now() - ${minAgeMs} * interval '1 millisecond'
          limit ${batch})
        returning revision),
      u as (
        update feed_compaction set revision = greatest(revision, (select max(revision) from d))
        where exists (select 1 from d))
      select count(*) as n from d`.execute(db);
    const n = Number(rows[0]!.n);
    total += n;
    if (n < batch) return total;
  }
}

/** Of these API key ids, the ones that are still live (one query for every open stream). */
export async function liveKeyIds(db: Db, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await sql<{ id: string }>`
    select id from api_keys where id = any(${ids}::text[]) and revoked_at is null`.execute(db);
  return new Set(rows.map((r) => r.id));
}
