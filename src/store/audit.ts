import { sql } from "kysely";
import type { Db, Tx } from "./database.js";

export interface AuditEntryRecord {
  seq: bigint;
  at: Date;
  kind: string;
  agentId: string;
  tokenId: string;
  actor: string;
  reason: string;
  details: Record<string, unknown>;
  leafHash: Buffer;
}

// to_char pattern giving what Date.toISOString writes, e.g. 2026-01-02T03:04:05.678Z.
const ISO_MS = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"';

/**
 * Appends one entry in a single statement: takes the next seq from audit_head (its row lock is
 * held until commit, so seqs commit in order and a rollback hands its seq out again) and stores
 * the row with its leaf hash. The caller supplies the canonical bytes around seq and time
 * (src/audit/encoding.ts); SQL fills those two in, so the lock costs one round trip. Call it last
 * in the transaction.
 */
export async function insertAuditEntry(
  tx: Tx,
  e: {
    kind: string;
    agentId: string;
    tokenId: string;
    actor: string;
    reason: string;
    detailsJson: string;
    leafPrefix: Buffer;
    leafSuffix: Buffer;
  },
): Promise<{ seq: bigint; at: Date }> {
  const { rows } = await sql<{ seq: string; at: Date }>`
    with h as (
      update audit_head set size = size + 1
      returning size - 1 as seq, date_trunc('milliseconds', clock_timestamp()) as at
    )
    insert into audit_entries (seq, at, kind, agent_id, token_id, actor, reason, details, leaf_hash)
    select h.seq, h.at, ${e.kind}, ${e.agentId || null}, ${e.tokenId || null}, ${e.actor}, ${e.reason},
           ${e.detailsJson}::jsonb,
           sha256(${e.leafPrefix}::bytea
             || convert_to(h.seq::text || ',"time":"' || to_char(h.at at time zone 'UTC', ${ISO_MS}) || '"', 'UTF8')
             || ${e.leafSuffix}::bytea)
    from h
    returning seq, at`.execute(tx);
  return { seq: BigInt(rows[0]!.seq), at: rows[0]!.at };
}

/** Leaf hashes from seq `from` on, in order; stops early at a gap so callers see a prefix. */
export async function readLeafHashes(db: Db, from: bigint, limit: number): Promise<Buffer[]> {
  const rows = await db
    .selectFrom("audit_entries")
    .select(["seq", "leaf_hash"])
    .where("seq", ">=", from.toString() as never)
    .orderBy("seq")
    .limit(limit)
    .execute();
  const out: Buffer[] = [];
  for (const r of rows) {
    if (BigInt(r.seq) !== from + BigInt(out.length)) break;
    out.push(r.leaf_hash);
  }
  return out;
}

export interface EntryFilter {
  agentId?: string;
  kind?: string;
  since?: Date;
  until?: Date;
  fromSeq: bigint;
  limit: number;
}

export async function listAuditEntries(db: Db, f: EntryFilter): Promise<AuditEntryRecord[]> {
  let q = db.selectFrom("audit_entries").selectAll().where("seq", ">=", f.fromSeq.toString() as never);
  if (f.agentId) q = q.where("agent_id", "=", f.agentId);
  if (f.kind) q = q.where("kind", "=", f.kind);
  if (f.since) q = q.where("at", ">=", f.since);
  if (f.until) q = q.where("at", "<", f.until);
  const rows = await q.orderBy("seq").limit(f.limit).execute();
  return rows.map((r) => ({
    seq: BigInt(r.seq),
    at: r.at,
    kind: r.kind,
    agentId: r.agent_id ?? "",
    tokenId: r.token_id ?? "",
    actor: r.actor,
    reason: r.reason,
    details: r.details,
    leafHash: r.leaf_hash,
  }));
}

export interface StoredCheckpoint {
  treeSize: bigint;
  rootHash: Buffer;
  note: string;
}

/** Records a signed checkpoint; replicas signing the same size with the same key agree. */
export async function saveCheckpoint(db: Db, c: StoredCheckpoint): Promise<void> {
  await db
    .insertInto("audit_checkpoints")
    .values({ tree_size: c.treeSize, root_hash: c.rootHash, note: c.note })
    .onConflict((oc) => oc.column("tree_size").doNothing())
    .execute();
}

export async function latestCheckpoint(db: Db): Promise<StoredCheckpoint | undefined> {
  const r = await db
    .selectFrom("audit_checkpoints")
    .select(["tree_size", "root_hash", "note"])
    .orderBy("tree_size", "desc")
    .limit(1)
    .executeTakeFirst();
  return r && { treeSize: BigInt(r.tree_size), rootHash: r.root_hash, note: r.note };
}

/** The stored signing key, creating it from `create` on first use (first writer wins). */
export async function loadOrCreateSigningKey(db: Db, create: () => { pem: string; publicKey: Buffer }): Promise<string> {
  const existing = await db.selectFrom("audit_keys").select("private_key_pem").executeTakeFirst();
  if (existing) return existing.private_key_pem;
  const k = create();
  await db
    .insertInto("audit_keys")
    .values({ private_key_pem: k.pem, public_key: k.publicKey })
    .onConflict((oc) => oc.column("id").doNothing())
    .execute();
  const row = await db.selectFrom("audit_keys").select("private_key_pem").executeTakeFirstOrThrow();
  return row.private_key_pem;
}
