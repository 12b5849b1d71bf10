import type { Db, Tx } from "../store/database.js";
import { countLiveTokens, lockToken, markTokenRevoked } from "../store/tokens.js";
import { lockAgent, markAgentRevoked } from "../store/agents.js";
import { appendRevocation, nextRevision } from "../store/revocations.js";
import { appendAuditEntry } from "../audit/append.js";
import { notFound } from "./errors.js";
import { hashSecret } from "./ids.js";

export type RevokeTarget = { token: string } | { tokenId: string } | { agentId: string };

export interface RevokeResult {
  /** The event's revision; for a repeated revoke, the original one. */
  revision: bigint;
  tokensRevoked: bigint;
}

/**
 * Revokes a token or a whole agent. Irreversible and idempotent: a second call writes nothing and
 * answers with the revision of the revocation already in force. `by` is the actor (a principal,
 * or policy:<name>), recorded as revoked_by and in the transparency log entry.
 */
export function revoke(db: Db, target: RevokeTarget, reason: string, by: string): Promise<RevokeResult> {
  return db.transaction().execute((tx) =>
    "agentId" in target ? revokeAgent(tx, target.agentId, reason, by) : revokeToken(tx, target, reason, by),
  );
}

async function revokeToken(
  tx: Tx,
  target: { token: string } | { tokenId: string },
  reason: string,
  by: string,
): Promise<RevokeResult> {
  const t = await lockToken(tx, "token" in target ? { hash: hashSecret(target.token) } : { id: target.tokenId });
  if (!t) throw notFound("token" in target ? "token" : `token ${target.tokenId}`);
  const already = t.revokedRevision ?? t.agentRevokedRevision;
  if (already !== null) return { revision: already, tokensRevoked: 0n };
  const { revision, at } = await nextRevision(tx);
  await markTokenRevoked(tx, t.id, revision, at);
  await appendRevocation(tx, {
    revision,
    tokenId: t.id,
    agentId: t.agentId,
    reason,
    revokedBy: by,
    revokedAt: at,
    expiresAt: t.expiresAt,
  });
  await appendAuditEntry(tx, {
    kind: "token.revoked",
    agentId: t.agentId,
    tokenId: t.id,
    actor: by,
    reason,
    details: { revision: Number(revision) },
  });
  return { revision, tokensRevoked: 1n };
}

async function revokeAgent(tx: Tx, agentId: string, reason: string, by: string): Promise<RevokeResult> {
  const agent = await lockAgent(tx, agentId);
  if (!agent) throw notFound(`agent ${agentId}`);
  if (agent.revokedRevision !== null) return { revision: agent.revokedRevision, tokensRevoked: 0n };
  // Token rows stay as they are: Introspect checks the agent's status, so one row update
  // makes every token of the agent inactive at once.
  const tokensRevoked = await countLiveTokens(tx, agentId);
  const { revision, at } = await nextRevision(tx);
  await markAgentRevoked(tx, agentId, { reason, by, revision, at });
  await appendRevocation(tx, {
    revision,
    tokenId: null,
    agentId,
    reason,
    revokedBy: by,
    revokedAt: at,
    expiresAt: null,
  });
  await appendAuditEntry(tx, {
    kind: "agent.revoked",
    agentId,
    actor: by,
    reason,
    details: { revision: Number(revision), tokens_revoked: Number(tokensRevoked) },
  });
  return { revision, tokensRevoked };
}
