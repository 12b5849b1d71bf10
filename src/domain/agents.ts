import type { Db } from "../store/database.js";
import {
  agentActivitySummaries,
  findAgent,
  insertAgent,
  listAgents,
  type AgentActivitySummary,
  type AgentRecord,
  type AgentStatus,
} from "../store/agents.js";
import { appendAuditEntry, auditedTransaction } from "../audit/append.js";
import { invalidArgument, notFound } from "./errors.js";
import { newAgentId } from "./ids.js";
import { pointProblem } from "./ed25519.js";
import { decodePageToken, encodePageToken } from "./validate.js";
import type { LogWaker } from "../store/sequencer.js";

export const ED25519_PUBLIC_KEY_BYTES = 32;

export function requirePublicKey(field: string, key: Uint8Array): Uint8Array {
  if (key.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw invalidArgument(field, `must be a raw 32-byte Ed25519 public key, got ${key.length} bytes`);
  }
  // A small-order key verifies forged signatures (R = identity, S = 0) for any message.
  const problem = pointProblem(key);
  if (problem) throw invalidArgument(field, `is not an acceptable Ed25519 public key (${problem})`);
  return key;
}

/**
 * Registers an agent and logs agent.registered, with what it may be issued, in the same
 * transaction. Allowed scopes and audiences deny by default: see issueToken.
 */
export function registerAgent(
  db: Db,
  logs: LogWaker,
  a: { name: string; publicKey: Uint8Array; labels: Record<string, string>; allowedScopes: string[]; allowedAudiences: string[] },
  actor: string,
): Promise<AgentRecord> {
  return auditedTransaction(db, logs, async (tx) => {
    const agent = await insertAgent(tx, { id: newAgentId(), ...a });
    await appendAuditEntry(tx, {
      kind: "agent.registered",
      agentId: agent.id,
      actor,
      details: {
        name: agent.name,
        public_key: Buffer.from(agent.publicKey).toString("base64"),
        labels: agent.labels,
        allowed_scopes: agent.allowedScopes,
        allowed_audiences: agent.allowedAudiences,
      },
    });
    return agent;
  });
}

export async function getAgent(db: Db, id: string): Promise<AgentRecord> {
  const agent = await findAgent(db, id);
  if (!agent) throw notFound(`agent ${id}`);
  return agent;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

// Page tokens: the last row's seq.
export async function listAgentPage(
  db: Db,
  q: { pageSize: number; pageToken: string; status?: AgentStatus; text?: string; labels?: Record<string, string> },
): Promise<{ agents: AgentRecord[]; nextPageToken: string }> {
  if (q.pageSize < 0 || q.pageSize > MAX_PAGE_SIZE) {
    throw invalidArgument("page_size", `must be between 0 and ${MAX_PAGE_SIZE}`);
  }
  if (q.text && q.text.length > 128) throw invalidArgument("query", "must be at most 128 characters");
  const limit = q.pageSize || DEFAULT_PAGE_SIZE;
  const beforeSeq = q.pageToken ? decodePageToken(q.pageToken, "ListAgents") : undefined;
  // One extra row tells whether another page exists.
  const rows = await listAgents(db, { limit: limit + 1, status: q.status, beforeSeq, text: q.text, labels: q.labels });
  const agents = rows.slice(0, limit);
  const last = agents[agents.length - 1];
  const nextPageToken = rows.length > limit && last ? encodePageToken(last.seq) : "";
  return { agents, nextPageToken };
}

/** Live token counts and last activity, for the agents about to be returned. */
export function summarizeAgents(db: Db, agents: readonly AgentRecord[]): Promise<Map<string, AgentActivitySummary>> {
  return agentActivitySummaries(db, agents.map((a) => a.id));
}
