import { createHash } from "node:crypto";
import type { Db } from "../store/database.js";
import { findAgent } from "../store/agents.js";
import { insertTokenForActiveAgent, readTokenAtRevision, type TokenRecord } from "../store/tokens.js";
import { appendAuditEntry } from "../audit/append.js";
import { failedPrecondition, invalidArgument, notFound } from "./errors.js";
import { isWellFormedToken, newToken, newTokenId } from "./ids.js";

export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

export interface TtlPolicy {
  defaultMs: number;
  maxMs: number;
}

/** Resolves a requested TTL (undefined = default) against the server's bounds. */
export function resolveTtl(field: string, requestedMs: number | undefined, policy: TtlPolicy): number {
  if (requestedMs === undefined) return policy.defaultMs;
  if (!Number.isFinite(requestedMs) || requestedMs < 1000) throw invalidArgument(field, "must be at least 1s");
  if (requestedMs > policy.maxMs) throw invalidArgument(field, `must be at most ${policy.maxMs / 1000}s`);
  return Math.floor(requestedMs);
}

/** Issues a token and logs token.issued (with the token id, never the token) in the same transaction. */
export async function issueToken(
  db: Db,
  req: { agentId: string; scopes: string[]; audiences: string[]; ttlMs: number },
  actor: string,
): Promise<{ token: string; record: TokenRecord }> {
  const token = newToken();
  const record = await db.transaction().execute(async (tx) => {
    const r = await insertTokenForActiveAgent(tx, { id: newTokenId(), tokenHash: hashToken(token), ...req });
    if (!r) return undefined;
    await appendAuditEntry(tx, {
      kind: "token.issued",
      agentId: r.agentId,
      tokenId: r.id,
      actor,
      details: { scopes: r.scopes, audiences: r.audiences, expires_at: r.expiresAt.toISOString() },
    });
    return r;
  });
  if (record) return { token, record };
  const agent = await findAgent(db, req.agentId);
  if (!agent) throw notFound(`agent ${req.agentId}`);
  throw failedPrecondition(`agent ${req.agentId} is revoked; register a new agent`);
}

export type InactiveReason = "UNKNOWN_TOKEN" | "MALFORMED" | "EXPIRED" | "REVOKED" | "AGENT_REVOKED" | "SCOPE_NOT_GRANTED";

export interface Introspection {
  active: boolean;
  inactiveReason?: InactiveReason;
  token?: TokenRecord;
  /** The log revision the answer was read at; 0n when no read was needed. */
  revision: bigint;
}

export async function introspect(db: Db, token: string, requiredScope: string, now = Date.now()): Promise<Introspection> {
  // A mistyped or foreign string never costs a database round trip.
  if (!isWellFormedToken(token)) return { active: false, inactiveReason: "MALFORMED", revision: 0n };
  const { revision, token: state } = await readTokenAtRevision(db, hashToken(token));
  if (!state) return { active: false, inactiveReason: "UNKNOWN_TOKEN", revision };
  const inactive = (inactiveReason: InactiveReason): Introspection => ({ active: false, inactiveReason, token: state, revision });
  if (state.agentStatus === "REVOKED") return inactive("AGENT_REVOKED");
  if (state.revokedRevision !== null) return inactive("REVOKED");
  if (state.expiresAt.getTime() <= now) return inactive("EXPIRED");
  if (requiredScope && !state.scopes.includes(requiredScope)) return inactive("SCOPE_NOT_GRANTED");
  return { active: true, token: state, revision };
}
