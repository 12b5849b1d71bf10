// RFC 7523 JWT assertions: an agent proves it holds its registered Ed25519 key with a short JWS
// signed by it, as its client authentication at the OAuth token endpoint (private_key_jwt, §2.2)
// or as the grant itself (§2.1). jose parses and verifies; the rules around it (who, for whom,
// when, once) are agentid's, the same as for a signed Issue request.
import { createHash } from "node:crypto";
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify } from "jose";
import type { Db } from "../store/database.js";
import { proofContext } from "../store/agents.js";
import { useNonce } from "../store/activity.js";
import { ed25519PublicKey, isStrictEd25519 } from "./proof.js";
import { AGENT_ID_SHAPE } from "./ids.js";

/** A refused assertion; the token endpoint answers it as invalid_client or invalid_grant. */
export class AssertionError extends Error {}

/** openid-client v6 names Ed25519 signatures "Ed25519" (RFC 9864); most libraries say "EdDSA". */
export const ASSERTION_ALGORITHMS = ["EdDSA", "Ed25519"];

/**
 * The agent an assertion names, read before it is verified so that its key can be found: `iss`
 * and `sub` must both be the agent id, and so must `client_id` when the client sent one.
 */
export function assertedAgent(assertion: string, clientId: string | undefined): string {
  let claims;
  try {
    claims = decodeJwt(assertion);
    // A header that does not decode is refused here too, before a transaction is spent on it.
    decodeProtectedHeader(assertion);
  } catch (err) {
    throw new AssertionError(`the assertion is not a JWT (${err instanceof Error ? err.message : String(err)})`);
  }
  const { iss, sub } = claims;
  if (typeof iss !== "string" || !AGENT_ID_SHAPE.test(iss)) throw new AssertionError("the assertion's iss must be the agent id (agt_...)");
  if (sub !== iss) throw new AssertionError("the assertion's sub must equal its iss (the agent id)");
  if (clientId !== undefined && clientId !== iss) throw new AssertionError("client_id must equal the assertion's iss and sub (the agent id)");
  return iss;
}

/**
 * Verifies `agentId`'s assertion: signed by its registered key, `aud` one of `audiences`, `exp` not
 * passed, `iat` within maxSkewMs of now, and its `jti` never seen before for this agent (kept in the
 * nonce table signed Issue requests use, so a replay is refused on every replica). One clock, the
 * database's, read in the transaction that records the jti. An assertion is good for at most
 * maxSkewMs after its iat, whatever its exp says (authlib's default exp is an hour away), so its jti
 * is kept that long.
 */
export async function verifyAssertion(
  db: Db,
  assertion: string,
  agentId: string,
  o: { audiences: readonly string[]; maxSkewMs: number },
): Promise<void> {
  const signature = Buffer.from(assertion.split(".")[2] ?? "", "base64url");
  await db.transaction().execute(async (tx) => {
    const ctx = await proofContext(tx, agentId);
    if (!ctx.publicKey) throw new AssertionError(`agent ${agentId} is not registered with a public key`);
    let payload;
    try {
      ({ payload } = await jwtVerify(assertion, ed25519PublicKey(ctx.publicKey), {
        algorithms: ASSERTION_ALGORITHMS,
        audience: [...o.audiences],
        issuer: agentId,
        subject: agentId,
        requiredClaims: ["exp", "iat", "jti"],
        currentDate: new Date(ctx.nowMs),
        // For nbf and exp: the agent's clock may differ from the database's as much as a signed Issue's may.
        clockTolerance: o.maxSkewMs / 1000,
      }));
    } catch (err) {
      throw new AssertionError(explain(err, agentId, o.audiences));
    }
    if (!isStrictEd25519(ctx.publicKey, signature)) {
      throw new AssertionError(`the assertion's signature does not verify with agent ${agentId}'s registered key`);
    }
    const iatMs = payload.iat! * 1000;
    if (!(Math.abs(ctx.nowMs - iatMs) <= o.maxSkewMs)) {
      throw new AssertionError(`the assertion's iat is more than ${o.maxSkewMs / 1000}s from the server's clock (sign a fresh one for each request)`);
    }
    if (typeof payload.jti !== "string" || payload.jti.length === 0) throw new AssertionError("the assertion's jti must be a non-empty string");
    // Hashed: any jti fits, and none can collide with a signed Issue's nonce (those have no ":").
    const nonce = `jwt:${createHash("sha256").update(payload.jti).digest("base64url")}`;
    if (!(await useNonce(tx, agentId, nonce, new Date(iatMs + o.maxSkewMs)))) {
      throw new AssertionError("the assertion was already used (replayed jti)");
    }
  });
}

function explain(err: unknown, agentId: string, audiences: readonly string[]): string {
  if (err instanceof errors.JWTExpired) return "the assertion has expired (exp has passed)";
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === "aud") return `the assertion's aud must be ${audiences.join(" or ")}`;
    if (err.claim === "nbf") return "the assertion is not valid yet (nbf is in the future)";
    return `the assertion's ${err.claim} claim ${err.reason === "missing" ? "is missing" : "is invalid"}`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return `the assertion's alg must be ${ASSERTION_ALGORITHMS.join(" or ")} (an Ed25519 signature)`;
  if (err instanceof errors.JWSSignatureVerificationFailed) return `the assertion's signature does not verify with agent ${agentId}'s registered key`;
  if (err instanceof errors.JOSEError) return `the assertion is not a valid JWT (${err.message})`;
  throw err;
}
