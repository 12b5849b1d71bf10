import { sql } from "kysely";
import type { Db } from "./database.js";
import { PREPARED } from "./open.js";
import type { AgentStatus } from "./agents.js";
import { auditInboxInsert, type AuditRow } from "./audit.js";

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
 * Inserts a token, and its audit entry, only while its agent is ACTIVE and the scopes are
 * allowed: one statement, so one round trip. agentid_issue_gate (migration 0005) holds the
 * agent's issuance lock until commit and re-reads its status after any kill that held it, so an
 * issuance never commits after its agent's kill (nor is it missed by the kill's count). Returns
 * false when nothing was inserted.
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
    /** Scopes must be within the agent's allowed scopes, even when it has none. */
    selfIssued: boolean;
    audit: AuditRow;
  },
): Promise<boolean> {
  const result = await sql<{ id: string }>`${sql.raw(PREPARED)}
    with token as (
      insert into tokens (id, token_hash, agent_id, scopes, audiences, issued_at, expires_at)
      select ${t.id}, ${Buffer.from(t.tokenHash)}, a.id, ${t.scopes}::text[], ${t.audiences}::text[], ${t.issuedAt}, ${t.expiresAt}
      from agents a where a.id = ${t.agentId} and a.status = 'ACTIVE'
        and (${t.scopes}::text[] <@ a.allowed_scopes or (not ${t.selfIssued} and cardinality(a.allowed_scopes) = 0))
        and agentid_issue_gate(a.id)
      returning id
    )
    ${auditInboxInsert(t.audit, { tokenId: sql`token.id`, from: sql`from token` })}
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
 * Tokens by hash and the log revision, read in one statement and so from one snapshot. Revocations
 * take effect at their commit and are numbered after it, so a state may already show revocations
 * numbered above `revision`, never miss one at or below it: any revocation this answer does not
 * reflect is numbered above `revision` (what the SDK's cache relies on). Hashes that match
 * nothing are absent from the map.
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
