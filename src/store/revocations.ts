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

// The feed's reads (pages, bounds, compaction) are in revocation-reads.ts.
