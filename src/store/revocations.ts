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
 * Appends an unnumbered event in the revoker's transaction; the sequencer numbers it once
 * committed. Returns its insertion id and time.
 */
export async function appendRevocation(
  tx: Tx,
  r: { tokenId: string | null; agentId: string; reason: string; revokedBy: string; expiresAt: Date | null },
): Promise<{ id: bigint; at: Date }> {
  const { rows } = await sql<{ id: string; revoked_at: Date }>`
    insert into revocations (token_id, agent_id, reason, revoked_by, expires_at)
    values (${r.tokenId}, ${r.agentId}, ${r.reason}, ${r.revokedBy}, ${r.expiresAt})
    returning id, revoked_at`.execute(tx);
  return { id: BigInt(rows[0]!.id), at: rows[0]!.revoked_at };
}

/**
 * Numbers every committed, unnumbered event (this caller's and anyone else's) and notifies the
 * replicas; many revokers share one sequencing transaction. See revocations_sequence (0001).
 */
export async function sequenceRevocations(db: Db): Promise<void> {
  await sql`select revocations_sequence()`.execute(db);
}

/** The revision of an event, once sequenced. */
export async function revisionOf(db: Db, id: bigint): Promise<bigint | null> {
  const row = await db.selectFrom("revocations").select("revision").where("id", "=", id.toString() as never).executeTakeFirst();
  return row?.revision == null ? null : BigInt(row.revision);
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
