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
import { appendAuditEntry } from "../audit/append.js";
import { invalidArgument, notFound } from "./errors.js";
import { newAgentId } from "./ids.js";

export const ED25519_PUBLIC_KEY_BYTES = 32;

const P = 2n ** 255n - 19n;
const D = (-121665n * modPow(121666n, P - 2n)) % P;

function modPow(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = ((base % P) + P) % P;
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
  }
  return result;
}

/** True when the 32 bytes decode to a point on the Ed25519 curve (RFC 8032 §5.1.3). */
export function isEd25519Point(key: Uint8Array): boolean {
  const bytes = Buffer.from(key);
  const sign = bytes[31]! >> 7;
  bytes[31]! &= 0x7f;
  const y = BigInt("0x" + Buffer.from(bytes).reverse().toString("hex"));
  if (y >= P) return false;
  const y2 = (y * y) % P;
  const x2 = (((y2 - 1n + P) % P) * modPow((D * y2 + 1n) % P, P - 2n)) % P;
  if (x2 === 0n) return sign === 0;
  // x exists exactly when x^2 is a quadratic residue (Euler's criterion).
  return modPow(x2, (P - 1n) / 2n) === 1n;
}

export function requirePublicKey(field: string, key: Uint8Array): Uint8Array {
  if (key.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw invalidArgument(field, `must be a raw 32-byte Ed25519 public key, got ${key.length} bytes`);
  }
  if (!isEd25519Point(key)) throw invalidArgument(field, "is not a valid Ed25519 public key (not a curve point)");
  return key;
}

/** Registers an agent and logs agent.registered in the same transaction. */
export function registerAgent(
  db: Db,
  a: { name: string; publicKey: Uint8Array; labels: Record<string, string>; allowedScopes: string[] },
  actor: string,
): Promise<AgentRecord> {
  return db.transaction().execute(async (tx) => {
    const agent = await insertAgent(tx, { id: newAgentId(), ...a });
    await appendAuditEntry(tx, {
      kind: "agent.registered",
      agentId: agent.id,
      actor,
      details: { name: agent.name, public_key: Buffer.from(agent.publicKey).toString("base64"), labels: agent.labels },
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

// Page tokens are opaque to clients: base64url of the last row's seq.
function decodeCursor(token: string): bigint {
  const text = Buffer.from(token, "base64url").toString();
  if (!/^[0-9]{1,19}$/.test(text)) {
    throw invalidArgument("page_token", "is not a token from a previous ListAgents response");
  }
  return BigInt(text);
}

export async function listAgentPage(
  db: Db,
  q: { pageSize: number; pageToken: string; status?: AgentStatus; text?: string; labels?: Record<string, string> },
): Promise<{ agents: AgentRecord[]; nextPageToken: string }> {
  if (q.pageSize < 0 || q.pageSize > MAX_PAGE_SIZE) {
    throw invalidArgument("page_size", `must be between 0 and ${MAX_PAGE_SIZE}`);
  }
  if (q.text && q.text.length > 128) throw invalidArgument("query", "must be at most 128 characters");
  const limit = q.pageSize || DEFAULT_PAGE_SIZE;
  const beforeSeq = q.pageToken ? decodeCursor(q.pageToken) : undefined;
  // One extra row tells whether another page exists.
  const rows = await listAgents(db, { limit: limit + 1, status: q.status, beforeSeq, text: q.text, labels: q.labels });
  const agents = rows.slice(0, limit);
  const last = agents[agents.length - 1];
  const nextPageToken = rows.length > limit && last ? Buffer.from(last.seq.toString()).toString("base64url") : "";
  return { agents, nextPageToken };
}

/** Live token counts and last activity, for the agents about to be returned. */
export function summarizeAgents(db: Db, agents: readonly AgentRecord[]): Promise<Map<string, AgentActivitySummary>> {
  return agentActivitySummaries(db, agents.map((a) => a.id));
}
