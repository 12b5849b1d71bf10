import { sql, type RawBuilder } from "kysely";
import type { PassResult, SequencedLog } from "./sequencer.js";
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
  salt: string;
  leafHash: Buffer;
}

export const AUDIT_CHANNEL = "agentid_audit";

/**
 * An entry as written: the caller supplies the canonical bytes around seq and time
 * (src/audit/encoding.ts); the sequencer fills those two in when it numbers the entry.
 */
export interface AuditRow {
  kind: string;
  agentId: string;
  tokenId: string;
  actor: string;
  reason: string;
  detailsJson: string;
  leafPrefix: Buffer;
  leafSuffix: Buffer;
}

/**
 * Appends one entry to the inbox in the caller's transaction; once committed, the sequencer
 * numbers it (so a rollback uses no seq).
 */
export async function insertAuditEntry(tx: Tx, e: AuditRow): Promise<void> {
  await tx
    .insertInto("audit_inbox")
    .values({
      kind: e.kind,
      agent_id: e.agentId || null,
      token_id: e.tokenId || null,
      actor: e.actor,
      reason: e.reason,
      details: e.detailsJson,
      leaf_prefix: e.leafPrefix,
      leaf_suffix: e.leafSuffix,
    })
    .execute();
}

/**
 * The same insert, for many entries, as a SQL fragment for a statement that appends them together
 * with the changes they record: `from` is a query whose columns are the entries' fields (kind,
 * agent_id, token_id, actor, reason, details jsonb, leaf_prefix bytea, leaf_suffix bytea), in the
 * order they are to be numbered; auditInboxJson(e) renders an entry's fields for a jsonb recordset.
 */
export function auditInboxInsert(from: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`insert into audit_inbox (kind, agent_id, token_id, actor, reason, details, leaf_prefix, leaf_suffix)
    select e.kind, e.agent_id, e.token_id, e.actor, e.reason, e.details, e.leaf_prefix, e.leaf_suffix from (${from}) e`;
}

/** An entry's fields as auditInboxInsert's recordset columns want them (bytes in base64). */
export function auditInboxJson(e: AuditRow): Record<string, unknown> {
  return {
    kind: e.kind,
    agent_id: e.agentId || null,
    token_id: e.tokenId || null,
    actor: e.actor,
    reason: e.reason,
    details: JSON.parse(e.detailsJson) as unknown,
    leaf_prefix: e.leafPrefix.toString("base64"),
    leaf_suffix: e.leafSuffix.toString("base64"),
  };
}

/** The transparency log, as the sequencer numbers it (migration 0005: agentid_sequence_audit). */
export const auditLogSequence: SequencedLog = {
  name: "audit",
  channel: AUDIT_CHANNEL,
  async pass(db: Db, max: number): Promise<PassResult> {
    const { rows } = await sql<{ o_head: string; o_numbered: number; o_busy: boolean }>`
      select * from agentid_sequence_audit(${max}::integer)`.execute(db);
    const r = rows[0]!;
    return { head: BigInt(r.o_head), numbered: r.o_numbered, busy: r.o_busy, found: new Map() };
  },
};

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
    if (r.seq === null || r.leaf_hash === null || BigInt(r.seq) !== from + BigInt(out.length)) break;
    out.push(r.leaf_hash);
  }
  return out;
}

/**
 * Which entries a caller may read (the README's role table): every one; those about agents and
 * tokens (no key.* or policy.* metadata); or only those about tokens that list one of the given
 * audiences, and the revocations of agents holding such a token.
 */
export type EntryVisibility = { all: true } | { agentsAndTokens: true } | { audiences: readonly string[] };

export interface EntryFilter {
  /** Unset: every entry (the server's own readers: the tree, tiles, timelines). */
  visibility?: EntryVisibility;
  agentId?: string;
  kind?: string;
  since?: Date;
  until?: Date;
  fromSeq: bigint;
  limit: number;
}

export async function listAuditEntries(db: Db, f: EntryFilter): Promise<AuditEntryRecord[]> {
  let q = db
    .selectFrom("audit_entries")
    .select(["seq", "at", "kind", "agent_id", "token_id", "actor", "reason", "details", "salt", "leaf_hash"])
    .where("seq", ">=", f.fromSeq.toString() as never);
  if (f.agentId) q = q.where("agent_id", "=", f.agentId);
  if (f.kind) q = q.where("kind", "=", f.kind);
  const v = f.visibility ?? { all: true };
  if ("agentsAndTokens" in v) {
    q = q.where(sql<boolean>`(kind like 'agent.%' or kind like 'token.%' or kind like 'activity.%')`);
  } else if ("audiences" in v) {
    const audiences = [...v.audiences];
    q = q.where(sql<boolean>`(
      (kind in ('token.issued', 'token.revoked')
        and exists (select 1 from tokens t where t.id = audit_entries.token_id and t.audiences && ${audiences}::text[]))
      or (kind = 'agent.revoked'
        and exists (select 1 from tokens t where t.agent_id = audit_entries.agent_id and t.audiences && ${audiences}::text[])))`);
  }
  if (f.since) q = q.where("at", ">=", f.since);
  if (f.until) q = q.where("at", "<", f.until);
  const rows = await q.orderBy("seq").limit(f.limit).execute();
  return rows.map((r) => ({
    // Rows read by seq are committed, so seq and at are set.
    seq: BigInt(r.seq!),
    at: r.at!,
    kind: r.kind,
    agentId: r.agent_id ?? "",
    tokenId: r.token_id ?? "",
    actor: r.actor,
    reason: r.reason,
    details: r.details,
    salt: r.salt,
    leafHash: r.leaf_hash ?? Buffer.alloc(0),
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

/** A signing key that an earlier version kept in the database (table audit_keys), if any. */
export async function readStoredSigningKey(db: Db): Promise<string | undefined> {
  const row = await db.selectFrom("audit_keys").select("private_key_pem").executeTakeFirst();
  return row?.private_key_pem;
}

/** Removes the signing key from the database, once it is kept outside it. */
export async function deleteStoredSigningKey(db: Db): Promise<void> {
  await db.deleteFrom("audit_keys").execute();
}

/** Signed checkpoints, largest tree first, of trees at most maxSize and below beforeSize. */
export async function listCheckpoints(
  db: Db,
  q: { maxSize?: bigint; beforeSize?: bigint; limit: number },
): Promise<StoredCheckpoint[]> {
  let query = db.selectFrom("audit_checkpoints").select(["tree_size", "root_hash", "note"]);
  if (q.maxSize !== undefined) query = query.where("tree_size", "<=", q.maxSize.toString() as never);
  if (q.beforeSize !== undefined) query = query.where("tree_size", "<", q.beforeSize.toString() as never);
  const rows = await query.orderBy("tree_size", "desc").limit(q.limit).execute();
  return rows.map((r) => ({ treeSize: BigInt(r.tree_size), rootHash: r.root_hash, note: r.note }));
}
