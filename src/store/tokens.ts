import { sql } from "kysely";
import type { Db, Tx } from "./database.js";
import type { AgentStatus } from "./agents.js";
import type { AuditRow } from "./audit.js";

export interface TokenRecord {
  id: string;
  agentId: string;
  scopes: string[];
  audiences: string[];
  issuedAt: Date;
  expiresAt: Date;
}

/** A token with its agent's live state, as Introspect and Revoke need it. */
export interface TokenState extends TokenRecord {
  /** Revoked, whether or not the sequencer has numbered the revocation yet. */
  revoked: boolean;
  agentStatus: AgentStatus;
}


/**
 * Inserts a token, and its audit entry, only while its agent is ACTIVE and the scopes and
 * audiences are within the agent's allowed ones (empty allows none): one statement, so one round trip, and issuance cannot slip past a committed agent
 * revocation. Returns false when nothing was inserted.
 */
export async function insertTokenForActiveAgent(
  db: Db,
  t: {
    id: string;
    tokenHash: Uint8Array;
    agentId: string;
    scopes: string[];
    audiences: string[];
    issuedAt: Date;
    expiresAt: Date;
    audit: AuditRow;
  },
): Promise<boolean> {
  const a = t.audit;
  const result = await sql<{ id: string }>`
    with token as (
      insert into tokens (id, token_hash, agent_id, scopes, audiences, issued_at, expires_at)
      select ${t.id}, ${Buffer.from(t.tokenHash)}, a.id, ${t.scopes}::text[], ${t.audiences}::text[], ${t.issuedAt}, ${t.expiresAt}
      from agents a where a.id = ${t.agentId} and a.status = 'ACTIVE'
        and ${t.scopes}::text[] <@ a.allowed_scopes and ${t.audiences}::text[] <@ a.allowed_audiences
      returning id
    )
    insert into audit_entries (kind, agent_id, token_id, actor, reason, details, leaf_prefix, leaf_suffix)
    select ${a.kind}, ${a.agentId}, token.id, ${a.actor}, ${a.reason}, ${a.detailsJson}::jsonb, ${a.leafPrefix}, ${a.leafSuffix}
    from token
    returning token_id as id`.execute(db);
  return result.rows.length === 1;
}

type StateRow = {
  id: string;
  agent_id: string;
  scopes: string[];
  audiences: string[];
  issued_at: Date;
  expires_at: Date;
  revoked: boolean;
  agent_status: AgentStatus;
};

function toState(r: StateRow): TokenState {
  return {
    id: r.id,
    agentId: r.agent_id,
    scopes: r.scopes,
    audiences: r.audiences,
    issuedAt: r.issued_at,
    expiresAt: r.expires_at,
    revoked: r.revoked,
    agentStatus: r.agent_status,
  };
}

/**
 * Tokens by hash and the log revision, read in one statement and so from one snapshot: each state
 * is exactly the state after `revision`. Hashes that match nothing are absent from the map.
 */
export async function readTokensAtRevision(
  db: Db,
  tokenHashes: readonly Uint8Array[],
): Promise<{ revision: bigint; tokens: Map<string, TokenState> }> {
  const { rows } = await sql<StateRow & { revision: string; token_hash: Buffer | null }>`
    select h.revision, t.token_hash, t.id, t.agent_id, t.scopes, t.audiences, t.issued_at, t.expires_at,
           t.revoked_at is not null as revoked, a.status as agent_status
    from log_head h
    left join (tokens t join agents a on a.id = t.agent_id)
      on t.token_hash = any(${tokenHashes.map((h) => Buffer.from(h))}::bytea[])`.execute(db);
  const tokens = new Map<string, TokenState>();
  for (const row of rows) if (row.token_hash) tokens.set(row.token_hash.toString("base64"), toState(row));
  return { revision: BigInt(rows[0]!.revision), tokens };
}

/** Locks the token row (not its agent) until the transaction ends. */
export async function lockToken(
  tx: Tx,
  by: { hash: Uint8Array } | { id: string },
): Promise<TokenState | undefined> {
  const where = "hash" in by ? sql`t.token_hash = ${Buffer.from(by.hash)}` : sql`t.id = ${by.id}`;
  const { rows } = await sql<StateRow>`
    select t.id, t.agent_id, t.scopes, t.audiences, t.issued_at, t.expires_at,
           t.revoked_at is not null as revoked, a.status as agent_status
    from tokens t join agents a on a.id = t.agent_id
    where ${where}
    for update of t`.execute(tx);
  return rows[0] && toState(rows[0]);
}

/** Revoked at once; its revision is filled in by the sequencer. */
export async function markTokenRevoked(tx: Tx, id: string, at: Date): Promise<void> {
  await tx.updateTable("tokens").set({ revoked_at: at }).where("id", "=", id).execute();
}

/** Tokens of the agent that are neither revoked nor expired. */
export async function countLiveTokens(tx: Tx, agentId: string): Promise<bigint> {
  const row = await tx
    .selectFrom("tokens")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("agent_id", "=", agentId)
    .where("revoked_at", "is", null)
    .where("expires_at", ">", sql<Date>`now()`)
    .executeTakeFirstOrThrow();
  return BigInt(row.n);
}

/** The revision of the token's own revocation, once sequenced. */
export async function tokenRevokedRevision(db: Db, id: string): Promise<bigint | null> {
  const row = await db.selectFrom("tokens").select("revoked_revision").where("id", "=", id).executeTakeFirst();
  return row?.revoked_revision == null ? null : BigInt(row.revoked_revision);
}
