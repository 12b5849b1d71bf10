import { createPublicKey, verify, type KeyObject } from "node:crypto";

// Pure: shared by the server and the client SDK, no I/O.

export interface IssueIntent {
  agentId: string;
  scopes: readonly string[];
  audiences: readonly string[];
  /** 0 for the server default. */
  ttlMs: number;
  signedAtMs: number;
  nonce: string;
}

export const NONCE_SHAPE = /^[A-Za-z0-9_-]{16,64}$/;

/** The bytes an agent signs to issue itself a token; documented on AgentProof in token.proto. */
export function issuePayload(i: IssueIntent): Buffer {
  return Buffer.from(
    [
      "agentid-issue-v1",
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

export function verifyIssueProof(publicKeyRaw: Uint8Array, intent: IssueIntent, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  return verify(null, issuePayload(intent), ed25519PublicKey(publicKeyRaw), signature);
}
