import type { Db, Tx } from "../store/database.js";
import { countLiveTokens, lockToken, markTokenRevoked, tokenRevokedRevision } from "../store/tokens.js";
import { findAgent, lockAgent, markAgentRevoked } from "../store/agents.js";
import { appendRevocation, revisionOf, sequenceRevocations } from "../store/revocations.js";
import { appendAuditEntry } from "../audit/append.js";
import { DomainError, notFound } from "./errors.js";
import { hashSecret } from "./ids.js";

export type RevokeTarget = { token: string } | { tokenId: string } | { agentId: string };

export interface RevokeResult {
  /** The event's revision; for a repeated revoke, the original one. */
  revision: bigint;
  tokensRevoked: bigint;
  /** The target was already revoked (the token itself, or its agent): this call changed nothing. */
  alreadyRevoked: boolean;
}

/** What the transaction did, and where to find the revision once the sequencer has numbered it. */
type Pending = { tokensRevoked: bigint } & ({ event: bigint } | { token: string } | { agent: string });

/**
 * Revokes a token or a whole agent. Irreversible and idempotent: a second call writes nothing and
 * answers with the revision of the revocation already in force. `by` is the actor (a principal,
 * or policy:<name>), recorded as revoked_by and in the transparency log entry.
 *
 * The revocation takes effect when its transaction commits (Introspect sees it at once); the
 * sequencer then gives it its revision and wakes the feed, before this returns.
 */
export async function revoke(db: Db, target: RevokeTarget, reason: string, by: string): Promise<RevokeResult> {
  const pending = await db.transaction().execute((tx) =>
    "agentId" in target ? revokeAgent(tx, target.agentId, reason, by) : revokeToken(tx, target, reason, by),
  );
  const lookup = () =>
    "event" in pending
      ? revisionOf(db, pending.event)
      : "token" in pending
        ? tokenRevokedRevision(db, pending.token)
        : findAgent(db, pending.agent).then((a) => a?.revokedRevision ?? null);
  // The sequencer numbers it here, or, if another sequencer run holds the lock, in that run or
  // the next one; a few milliseconds at most.
  for (let attempt = 0; attempt < 1000; attempt++) {
    await sequenceRevocations(db);
    const revision = await lookup();
    if (revision !== null) return { revision, tokensRevoked: pending.tokensRevoked, alreadyRevoked: !("event" in pending) };
    await new Promise((r) => setTimeout(r, Math.min(attempt, 10)));
  }
  throw new DomainError("unavailable", "the revocation is in force but its revision could not be read yet; retry to get it");
}

async function revokeToken(
  tx: Tx,
  target: { token: string } | { tokenId: string },
  reason: string,
  by: string,
): Promise<Pending> {
  const t = await lockToken(tx, "token" in target ? { hash: hashSecret(target.token) } : { id: target.tokenId });
  if (!t) throw notFound("token" in target ? "token" : `token ${target.tokenId}`);
  if (t.agentStatus === "REVOKED") return { agent: t.agentId, tokensRevoked: 0n };
  if (t.revoked) return { token: t.id, tokensRevoked: 0n };
  const { id, at } = await appendRevocation(tx, {
    tokenId: t.id,
    agentId: t.agentId,
    reason,
    revokedBy: by,
    expiresAt: t.expiresAt,
  });
  await markTokenRevoked(tx, t.id, at);
  await appendAuditEntry(tx, { kind: "token.revoked", agentId: t.agentId, tokenId: t.id, actor: by, reason });
  return { event: id, tokensRevoked: 1n };
}

async function revokeAgent(tx: Tx, agentId: string, reason: string, by: string): Promise<Pending> {
  const agent = await lockAgent(tx, agentId);
  if (!agent) throw notFound(`agent ${agentId}`);
  if (agent.status === "REVOKED") return { agent: agentId, tokensRevoked: 0n };
  // Token rows stay as they are: Introspect checks the agent's status, so one row update
  // makes every token of the agent inactive at once.
  const tokensRevoked = await countLiveTokens(tx, agentId);
  const { id, at } = await appendRevocation(tx, { tokenId: null, agentId, reason, revokedBy: by, expiresAt: null });
  await markAgentRevoked(tx, agentId, { reason, by, at });
  await appendAuditEntry(tx, {
    kind: "agent.revoked",
    agentId,
    actor: by,
    reason,
    details: { tokens_revoked: Number(tokensRevoked) },
  });
  return { event: id, tokensRevoked };
}
