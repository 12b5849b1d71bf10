import { sql } from "kysely";
import type { Db } from "./database.js";
import { PREPARED } from "./open.js";
import type { AgentStatus } from "./agents.js";
import { auditInboxInsert, auditInboxJson, type AuditRow } from "./audit.js";

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


export interface NewToken extends TokenRecord {
  tokenHash: Uint8Array;
  audit: AuditRow;
}

/**
 * Inserts tokens, each with its audit entry, each only while its agent is ACTIVE and its scopes
 * and audiences are within the agent's allowed ones (empty allows none): one statement for the whole batch, so one round trip and one commit. Returns the
 * ids of the tokens inserted. agentid_issue_gate (migration 0005) holds each agent's issuance lock
 * until commit and re-reads its status after any kill that held it, so an issuance never commits
 * after its agent's kill, nor is it missed by the kill's count.
 */
export async function insertTokensForActiveAgents(db: Db, ts: readonly NewToken[]): Promise<Set<string>> {
  const rows = ts.map((t) => ({
    id: t.id,
    token_hash: Buffer.from(t.tokenHash).toString("base64"),
    agent_id: t.agentId,
    scopes: t.scopes,
    audiences: t.audiences,
    issued_at: t.issuedAt.toISOString(),
    expires_at: t.expiresAt.toISOString(),
    audit: auditInboxJson(t.audit),
  }));
  const { rows: inserted } = await sql<{ id: string }>`${sql.raw(PREPARED)}
    with req as (
      select r.*, ord from jsonb_array_elements(${JSON.stringify(rows)}::jsonb) with ordinality as x(j, ord),
        jsonb_to_record(x.j) as r(id text, token_hash text, agent_id text, scopes text[], audiences text[],
                                  issued_at timestamptz, expires_at timestamptz, audit jsonb)
    ),
    token as (
      insert into tokens (id, token_hash, agent_id, scopes, audiences, issued_at, expires_at)
      select r.id, decode(r.token_hash, 'base64'), a.id, r.scopes, r.audiences, r.issued_at, r.expires_at
      from req r join agents a on a.id = r.agent_id
      where a.status = 'ACTIVE'
        and r.scopes <@ a.allowed_scopes and r.audiences <@ a.allowed_audiences
        and agentid_issue_gate(a.id)
      returning id
    )
    ${auditInboxInsert(sql`
      select e.kind, e.agent_id, token.id as token_id, e.actor, e.reason, e.details,
             decode(e.leaf_prefix, 'base64') as leaf_prefix, decode(e.leaf_suffix, 'base64') as leaf_suffix
      from token join req r on r.id = token.id,
        jsonb_to_record(r.audit) as e(kind text, agent_id text, actor text, reason text, details jsonb, leaf_prefix text, leaf_suffix text)
      order by r.ord`)}
    returning token_id as id`.execute(db);
  return new Set(inserted.map((r) => r.id));
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
