import type { Db } from "../store/database.js";
import { findAgent, proofContext } from "../store/agents.js";
import { insertTokensForActiveAgents, type NewToken, type TokenRecord } from "../store/tokens.js";
import type { TokenLookup } from "./token-lookup.js";
import { useNonce } from "../store/activity.js";
import { auditRow } from "../audit/append.js";
import { DomainError, failedPrecondition, invalidArgument, notFound } from "./errors.js";
import { ISSUE_PAYLOAD_VERSION, NONCE_SHAPE, verifyIssueProof, type IssueIntent } from "./proof.js";
import { hashSecret, isWellFormedToken, newToken, newTokenId } from "./ids.js";
import { Batcher } from "./batcher.js";
import type { LogWaker } from "../store/sequencer.js";

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

export interface IssueRequest {
  agentId: string;
  scopes: string[];
  audiences: string[];
  ttlMs: number;
  /** The OAuth grant it was asked for with, for its log entry; undefined on agentid's own Issue. */
  grant?: string;
}

/** The token, its record and its token.issued log entry (with the token id, never the token). */
function prepare(req: IssueRequest, actor: string): { token: string; row: NewToken } {
  const token = newToken();
  // Times come from this server's clock, which Introspect also checks expiry against.
  const issuedAt = new Date();
  const record: TokenRecord = {
    id: newTokenId(),
    agentId: req.agentId,
    scopes: req.scopes,
    audiences: req.audiences,
    issuedAt,
    expiresAt: new Date(issuedAt.getTime() + req.ttlMs),
  };
  const audit = auditRow({
    kind: "token.issued",
    agentId: record.agentId,
    tokenId: record.id,
    actor,
    details: {
      scopes: record.scopes,
      audiences: record.audiences,
      expires_at: record.expiresAt.toISOString(),
      ...(req.grant ? { grant: req.grant } : {}),
    },
  });
  return { token, row: { ...record, tokenHash: hashSecret(token), audit } };
}

/** What of `asked` lies outside agent `agentId`'s allowed scopes or audiences, said plainly; undefined: nothing. */
export function beyondAllowance(field: "scopes" | "audiences", asked: readonly string[], allowed: readonly string[], agentId: string): string | undefined {
  const extra = asked.filter((x) => !allowed.includes(x));
  return extra.length ? `${field} ${extra.join(", ")} are not among agent ${agentId}'s allowed ${field} (${allowed.join(", ") || "none"})` : undefined;
}

/** Why nothing was inserted for `req`. */
async function refusal(db: Db, req: IssueRequest): Promise<DomainError> {
  const agent = await findAgent(db, req.agentId);
  if (!agent) return notFound(`agent ${req.agentId}`);
  if (agent.status === "REVOKED") return failedPrecondition(`agent ${req.agentId} is revoked; register a new agent`);
  const problems = [
    beyondAllowance("scopes", req.scopes, agent.allowedScopes, req.agentId),
    beyondAllowance("audiences", req.audiences, agent.allowedAudiences, req.agentId),
  ].filter((p) => p !== undefined);
  return new DomainError("permission_denied", problems.join("; ") || `agent ${req.agentId} cannot be issued this token`);
}

function toIssued(token: string, row: NewToken): { token: string; record: TokenRecord } {
  const { id, agentId, scopes, audiences, issuedAt, expiresAt } = row;
  return { token, record: { id, agentId, scopes, audiences, issuedAt, expiresAt } };
}

interface Queued {
  req: IssueRequest;
  token: string;
  row: NewToken;
  resolve: (v: { token: string; record: TokenRecord }) => void;
  reject: (e: unknown) => void;
}

/**
 * Issues tokens for active agents, each logged as token.issued in the same statement. One rule
 * on every path, issuer key or the agent's own proof: a token's scopes and audiences must be
 * within its agent's allowed ones, and an agent registered with none can be issued none (deny by
 * default: a forgotten list grants nothing rather than everything). Batched (see Batcher):
 * requests that arrive while the database is busy are written together by one statement (one
 * round trip, one commit), each still its own token and log entry, accepted or refused on its own.
 */
export class TokenIssuer {
  private readonly batcher: Batcher<Queued>;

  constructor(
    private readonly db: Db,
    private readonly logs: LogWaker,
    maxInFlight = 4,
    maxBatch = 256,
  ) {
    this.batcher = new Batcher((batch) => this.write(batch), maxInFlight, maxBatch);
  }

  issue(req: IssueRequest, actor: string): Promise<{ token: string; record: TokenRecord }> {
    const { token, row } = prepare(req, actor);
    return new Promise((resolve, reject) => this.batcher.add({ req, token, row, resolve, reject }));
  }

  private async write(batch: Queued[]): Promise<void> {
    try {
      let inserted: Set<string>;
      try {
        inserted = await insertTokensForActiveAgents(this.db, batch.map((q) => q.row));
        // Each token's issuance entry is in the audit inbox now.
        if (inserted.size > 0) this.logs.wake("audit");
      } catch (err) {
        // One request's failure must not become its neighbours': alone, each gets its own answer.
        if (batch.length === 1) throw err;
        await Promise.all(batch.map((q) => this.write([q])));
        return;
      }
      for (const q of batch) {
        if (inserted.has(q.row.id)) q.resolve(toIssued(q.token, q.row));
        else refusal(this.db, q.req).then(q.reject, q.reject);
      }
    } catch (err) {
      for (const q of batch) q.reject(err);
    }
  }
}

/**
 * Checks an agent's signed Issue request: skew, signature, then the nonce (once only). One clock,
 * the database's, for both the skew check and the nonce's expiry, read once in one transaction: a
 * replica whose clock lags cannot accept a request whose nonce the database has already dropped.
 */
export async function verifyAgentProof(
  db: Db,
  intent: Omit<IssueIntent, "deploymentId">,
  signature: Uint8Array,
  maxSkewMs: number,
): Promise<void> {
  if (!NONCE_SHAPE.test(intent.nonce)) throw invalidArgument("proof.nonce", "must be 16 to 64 of A-Z a-z 0-9 _ -");
  if (signature.length !== 64) throw invalidArgument("proof.signature", "must be a 64-byte Ed25519 signature");
  // NaN compares false with everything, which once skipped the skew check entirely.
  if (!Number.isSafeInteger(intent.signedAtMs)) throw invalidArgument("proof.signed_at", "is not a representable time");
  await db.transaction().execute(async (tx) => {
    const ctx = await proofContext(tx, intent.agentId);
    if (!(Math.abs(ctx.nowMs - intent.signedAtMs) <= maxSkewMs)) {
      throw new DomainError("unauthenticated", `proof.signed_at is more than ${maxSkewMs / 1000}s from the server's clock (the database's)`);
    }
    if (!ctx.publicKey || !verifyIssueProof(ctx.publicKey, { ...intent, deploymentId: ctx.deploymentId }, signature)) {
      throw new DomainError(
        "unauthenticated",
        `proof does not verify with the agent's registered key (payload ${ISSUE_PAYLOAD_VERSION} for deployment ${ctx.deploymentId})`,
      );
    }
    if (!(await useNonce(tx, intent.agentId, intent.nonce, new Date(intent.signedAtMs + maxSkewMs)))) {
      throw new DomainError("unauthenticated", "proof was already used (replayed nonce)");
    }
  });
}

export type InactiveReason = "UNKNOWN_TOKEN" | "MALFORMED" | "EXPIRED" | "REVOKED" | "AGENT_REVOKED" | "SCOPE_NOT_GRANTED";

export interface Introspection {
  active: boolean;
  inactiveReason?: InactiveReason;
  token?: TokenRecord;
  /** The log revision the answer was read at; 0n when no read was needed. */
  revision: bigint;
}

/**
 * Audience binding: a caller bound to audiences (a resource_server key) sees a token only when the
 * token names one of them; undefined means unbound. Shared by Introspect and the gateway surfaces.
 */
export function audienceAdmits(tokenAudiences: readonly string[], callerAudiences: readonly string[] | undefined): boolean {
  return callerAudiences === undefined || tokenAudiences.some((a) => callerAudiences.includes(a));
}

/**
 * Answers from live state. With `audiences` (a resource server's), a token issued for none of them
 * is answered exactly like an unknown one, so callers cannot probe for other audiences' tokens.
 */
export async function introspect(
  lookup: TokenLookup,
  token: string,
  requiredScope: string,
  audiences?: readonly string[],
  now = Date.now(),
): Promise<Introspection> {
  // A mistyped or foreign string never costs a database round trip.
  if (!isWellFormedToken(token)) return { active: false, inactiveReason: "MALFORMED", revision: 0n };
  const { revision, token: state } = await lookup.lookup(hashSecret(token));
  if (!state || !audienceAdmits(state.audiences, audiences)) {
    return { active: false, inactiveReason: "UNKNOWN_TOKEN", revision };
  }
  const inactive = (inactiveReason: InactiveReason): Introspection => ({ active: false, inactiveReason, token: state, revision });
  if (state.agentStatus === "REVOKED") return inactive("AGENT_REVOKED");
  if (state.revoked) return inactive("REVOKED");
  if (state.expiresAt.getTime() <= now) return inactive("EXPIRED");
  if (requiredScope && !state.scopes.includes(requiredScope)) return inactive("SCOPE_NOT_GRANTED");
  return { active: true, token: state, revision };
}
