import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { isStrictSignatureShape, pointProblem } from "./ed25519.js";

// Pure: shared by the server and the client SDK, no I/O.

export interface IssueIntent {
  /** The deployment the proof is for (Agent.deployment_id): a proof made for one deployment is refused by every other. */
  deploymentId: string;
  agentId: string;
  scopes: readonly string[];
  audiences: readonly string[];
  /** 0 for the server default. */
  ttlMs: number;
  signedAtMs: number;
  nonce: string;
}

export const NONCE_SHAPE = /^[A-Za-z0-9_-]{16,64}$/;

/** The first line of the signed payload. v1 (no deployment binding) is refused: see AgentProof in token.proto. */
export const ISSUE_PAYLOAD_VERSION = "agentid-issue-v2";

/** The bytes an agent signs to issue itself a token; documented on AgentProof in token.proto. */
export function issuePayload(i: IssueIntent): Buffer {
  return Buffer.from(
    [
      ISSUE_PAYLOAD_VERSION,
      i.deploymentId,
      i.agentId,
      [...i.scopes].sort().join(" "),
      [...i.audiences].sort().join(" "),
      String(i.ttlMs),
      String(i.signedAtMs),
      i.nonce,
    ].join("\n"),
  );
}

const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" });
}

/**
 * What every Ed25519 signature agentid checks must also pass, beyond OpenSSL's cofactorless
 * verify: the key and R canonical and not of small order, and S < L. The key is checked here too,
 * not only at registration, so that a small-order key stored before registration refused them
 * still verifies nothing.
 */
export function isStrictEd25519(publicKeyRaw: Uint8Array, signature: Uint8Array): boolean {
  return publicKeyRaw.length === 32 && pointProblem(publicKeyRaw) === undefined && isStrictSignatureShape(signature);
}

/** Strict verification of a signed Issue request (isStrictEd25519, then OpenSSL's check). */
export function verifyIssueProof(publicKeyRaw: Uint8Array, intent: IssueIntent, signature: Uint8Array): boolean {
  return isStrictEd25519(publicKeyRaw, signature) && verify(null, issuePayload(intent), ed25519PublicKey(publicKeyRaw), signature);
}
