import type { Db } from "../store/database.js";
import type { Sequencer } from "../store/sequencer.js";
import { revokeAgentRow, revokeTokenRow, type RevokeOutcome } from "../store/revocations.js";
import { auditTemplate } from "../audit/append.js";
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

/**
 * Revokes a token or a whole agent. Irreversible and idempotent: a second call writes nothing and
 * answers with the revision of the revocation already in force. `by` is the actor (a principal,
 * or policy:<name>), recorded as revoked_by and in the transparency log entry.
 *
 * One round trip: the revocation and its log entry commit together and take effect at that
 * commit (Introspect sees it at once). The sequencer then gives it its revision and wakes the
 * feed; this resolves when it has.
 */
export async function revoke(
  db: Db,
  sequencer: Sequencer,
  target: RevokeTarget,
  reason: string,
  by: string,
): Promise<RevokeResult> {
  let r: RevokeOutcome;
  if ("agentId" in target) {
    const audit = auditTemplate({ kind: "agent.revoked", agentId: target.agentId, tokenId: "", actor: by, reason, details: {}, countKey: "tokens_revoked" });
    r = await revokeAgentRow(db, { agentId: target.agentId, reason, revokedBy: by, audit });
  } else {
    const audit = auditTemplate({ kind: "token.revoked", agentId: "from-database", tokenId: "from-database", actor: by, reason });
    r = await revokeTokenRow(db, {
      ...("token" in target ? { tokenHash: hashSecret(target.token) } : { tokenId: target.tokenId }),
      reason,
      revokedBy: by,
      audit,
    });
  }
  switch (r.outcome) {
    case "not_found":
      throw notFound("agentId" in target ? `agent ${target.agentId}` : "token" in target ? "token" : `token ${target.tokenId}`);
    case "revoked":
      sequencer.wake("audit");
      return { revision: await revisionOf(sequencer, r.event), tokensRevoked: r.tokensRevoked, alreadyRevoked: false };
    case "repeat":
      if (r.revision !== null) return { revision: r.revision, tokensRevoked: 0n, alreadyRevoked: true };
      // The original is committed and waits for its number.
      if (r.event !== null) return { revision: await revisionOf(sequencer, r.event), tokensRevoked: 0n, alreadyRevoked: true };
      throw new Error("revocation in force without an event");
    default: {
      const never: never = r;
      throw new Error(`unexpected outcome ${JSON.stringify(never)}`);
    }
  }
}

async function revisionOf(sequencer: Sequencer, event: bigint): Promise<bigint> {
  try {
    return await sequencer.numberOf("revocations", event);
  } catch {
    throw new DomainError("unavailable", "the revocation is in force but its revision could not be read yet; retry to get it");
  }
}
