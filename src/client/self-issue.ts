import { randomBytes, sign, type KeyObject } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { IssueRequestSchema, type IssueRequest } from "../../gen/agentid/v1/token_pb.js";
import { issuePayload } from "../domain/proof.js";

export interface SelfIssue {
  /** The deployment the agent is registered with: Agent.deployment_id, as RegisterAgent returned it. */
  deploymentId: string;
  agentId: string;
  /** The agent's Ed25519 private key (from createPrivateKey on its PEM). */
  privateKey: KeyObject;
  scopes?: string[];
  audiences?: string[];
  /** Omit for the server default. */
  ttlMs?: number;
}

/**
 * An Issue request an agent signs with its own key, to obtain a token with no API key. Each call
 * makes a fresh nonce and timestamp; the server accepts a given request once, and only the
 * deployment it names (payload agentid-issue-v2, see AgentProof in token.proto).
 */
export function signedIssueRequest(s: SelfIssue): IssueRequest {
  const scopes = s.scopes ?? [];
  const audiences = s.audiences ?? [];
  const signedAtMs = Date.now();
  const nonce = randomBytes(18).toString("base64url");
  const signature = sign(null, issuePayload({ deploymentId: s.deploymentId, agentId: s.agentId, scopes, audiences, ttlMs: s.ttlMs ?? 0, signedAtMs, nonce }), s.privateKey);
  return create(IssueRequestSchema, {
    agentId: s.agentId,
    scopes,
    audiences,
    ttl: s.ttlMs === undefined ? undefined : durationFromMs(s.ttlMs),
    proof: { signedAt: timestampFromMs(signedAtMs), nonce, signature },
  });
}
