import { sql } from "kysely";
import type { Db, Tx } from "./database.js";

export const REVOCATION_CHANNEL = "agentid_revocations";

export interface RevocationRecord {
  revision: bigint;
  tokenId: string | null;
  agentId: string;
  reason: string;
  revokedBy: string;
  revokedAt: Date;
  expiresAt: Date | null;
}

/**
 * Takes the next revision. The UPDATE holds log_head's row lock until commit, so revisions commit
 * in order and a rolled-back revision is handed out again: the log stays gap-free. Call it as late
 * in the transaction as possible to keep the lock short.
 */
export async function nextRevision(tx: Tx): Promise<{ revision: bigint; at: Date }> {
  const { rows } = await sql<{ revision: string; at: Date }>`
    update log_head set revision = revision + 1 returning revision, now() as at`.execute(tx);
  return { revision: BigInt(rows[0]!.revision), at: rows[0]!.at };
}

/**
 * Appends the event and wakes every replica's feed, in one statement. NOTIFY's commit-time lock
 * costs nothing extra here: log_head's row lock already serialises revokers until they commit
 * (bench/notify-throughput.ts measures it). A separate NOTIFY statement would cost a round trip
 * inside that lock, so it rides on the INSERT.
 */
export async function appendRevocation(tx: Tx, r: RevocationRecord): Promise<void> {
  await sql`
    with ins as (
      insert into revocations (revision, token_id, agent_id, reason, revoked_by, revoked_at, expires_at)
      values (${r.revision.toString()}::bigint, ${r.tokenId}, ${r.agentId}, ${r.reason}, ${r.revokedBy},
              ${r.revokedAt}, ${r.expiresAt})
      returning revision)
    select pg_notify(${REVOCATION_CHANNEL}, revision::text) from ins`.execute(tx);
}

type LogRow = {
  revision: string | null;
  token_id: string | null;
  agent_id: string;
  reason: string;
  revoked_by: string;
  revoked_at: Date;
  expires_at: Date | null;
  compacted: string;
  head: string;
};

export interface LogPage {
  events: RevocationRecord[];
  /** Compaction has removed events at or below this revision (read in the same snapshot). */
  compactedThrough: bigint;
  /** The last revision committed in that snapshot: a short page has every event up to it. */
  head: bigint;
}

/**
 * Events after `after`, oldest first, with the compaction floor from the same snapshot: if the
 * floor is above `after`, events in between may be gone and the page must not be trusted as gap-free.
 */
export async function readRevocationsAfter(db: Db, after: bigint, limit: number): Promise<LogPage> {
  const { rows } = await sql<LogRow>`
    select r.revision, r.token_id, r.agent_id, r.reason, r.revoked_by, r.revoked_at, r.expires_at,
           c.revision as compacted, h.revision as head
    from feed_compaction c cross join log_head h
    left join lateral (
      select * from revocations where revision > ${after.toString()}::bigint order by revision limit ${limit}
    ) r on true`.execute(db);
  const events: RevocationRecord[] = [];
  for (const r of rows) {
    if (r.revision === null) continue;
    events.push({
      revision: BigInt(r.revision),
      tokenId: r.token_id,
      agentId: r.agent_id,
      reason: r.reason,
      revokedBy: r.revoked_by,
      revokedAt: r.revoked_at,
      expiresAt: r.expires_at,
    });
  }
  return { events, compactedThrough: BigInt(rows[0]!.compacted), head: BigInt(rows[0]!.head) };
}

export async function headRevision(db: Db): Promise<bigint> {
  const row = await db.selectFrom("log_head").select("revision").executeTakeFirstOrThrow();
  return BigInt(row.revision);
}

/** The last revision handed out and the compaction floor, from one snapshot. */
export async function logBounds(db: Db): Promise<{ head: bigint; compactedThrough: bigint }> {
  const { rows } = await sql<{ head: string; compacted: string }>`
    select h.revision as head, c.revision as compacted from log_head h, feed_compaction c`.execute(db);
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
