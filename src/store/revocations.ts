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

/** Appends the event and wakes every replica's feed. */
export async function appendRevocation(tx: Tx, r: RevocationRecord): Promise<void> {
  await tx
    .insertInto("revocations")
    .values({
      revision: r.revision,
      token_id: r.tokenId,
      agent_id: r.agentId,
      reason: r.reason,
      revoked_by: r.revokedBy,
      revoked_at: r.revokedAt,
      expires_at: r.expiresAt,
    })
    .execute();
  await sql`select pg_notify(${REVOCATION_CHANNEL}, ${r.revision.toString()})`.execute(tx);
}

export async function readRevocationsAfter(db: Db, after: bigint, limit: number): Promise<RevocationRecord[]> {
  const rows = await db
    .selectFrom("revocations")
    .selectAll()
    .where("revision", ">", after.toString() as never)
    .orderBy("revision")
    .limit(limit)
    .execute();
  return rows.map((r) => ({
    revision: BigInt(r.revision),
    tokenId: r.token_id,
    agentId: r.agent_id,
    reason: r.reason,
    revokedBy: r.revoked_by,
    revokedAt: r.revoked_at,
    expiresAt: r.expires_at,
  }));
}

export async function headRevision(db: Db): Promise<bigint> {
  const row = await db.selectFrom("log_head").select("revision").executeTakeFirstOrThrow();
  return BigInt(row.revision);
}
