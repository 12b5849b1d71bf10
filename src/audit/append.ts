import type { Tx } from "../store/database.js";
import { insertAuditEntry, type AuditRow } from "../store/audit.js";
import { canonicalJson, leafPrefix, leafSuffix, type JsonValue } from "./encoding.js";

/**
 * What happened. The kinds written today; others (key.created, policy.changed,
 * activity.reported, ...) are accepted as long as they match KIND_SHAPE.
 */
export type KnownKind = "agent.registered" | "token.issued" | "token.revoked" | "agent.revoked";

// Lower-case dotted words, e.g. "policy.changed": stable, greppable, safe in any output.
export const KIND_SHAPE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const MAX_KIND = 64;
const MAX_TEXT = 1024;
const MAX_DETAILS = 16 * 1024;

export interface AuditEntryInput {
  kind: KnownKind | (string & {});
  agentId?: string;
  /** A token id (tok_...), never the token. */
  tokenId?: string;
  /** The principal, or policy:<name> for automatic actions. */
  actor: string;
  reason?: string;
  details?: { [key: string]: JsonValue };
}

// Entries are written by the server's own code, so bad input here is a bug: plain Errors
// (INTERNAL), not DomainErrors.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkText(field: string, v: string, max: number): void {
  if (v.length > max) throw new Error(`audit entry ${field} longer than ${max}`);
  if (v.includes("\u0000") || LONE_SURROGATE.test(v)) throw new Error(`audit entry ${field} is not storable text`);
}

function checkJson(v: JsonValue, path: string): void {
  if (typeof v === "string") return checkText(path, v, MAX_DETAILS);
  if (typeof v === "number" && !Number.isSafeInteger(v)) throw new Error(`audit entry ${path}: only safe integers`);
  if (Array.isArray(v)) v.forEach((x, i) => checkJson(x, `${path}[${i}]`));
  else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      checkText(`${path}.${k}`, k, 256);
      checkJson(x, `${path}.${k}`);
    }
  }
}

/** Checks an entry and renders the row to store (the canonical bytes around seq and time). */
export function auditRow(e: AuditEntryInput): AuditRow {
  if (!KIND_SHAPE.test(e.kind) || e.kind.length > MAX_KIND) throw new Error(`audit entry kind ${JSON.stringify(e.kind)} is malformed`);
  const content = {
    kind: e.kind,
    agentId: e.agentId ?? "",
    tokenId: e.tokenId ?? "",
    actor: e.actor,
    reason: e.reason ?? "",
    details: e.details ?? {},
  };
  if (!content.actor) throw new Error("audit entry actor is required");
  for (const f of ["agentId", "tokenId", "actor", "reason"] as const) checkText(f, content[f], MAX_TEXT);
  checkJson(content.details, "details");
  const detailsJson = canonicalJson(content.details);
  if (detailsJson.length > MAX_DETAILS) throw new Error(`audit entry details longer than ${MAX_DETAILS}`);
  return { ...content, detailsJson, leafPrefix: leafPrefix(content), leafSuffix: leafSuffix(content) };
}

/**
 * Appends an entry to the transparency log inside the caller's transaction, so the change and
 * its entry commit together or not at all. The entry's seq and time are assigned once committed.
 */
export async function appendAuditEntry(tx: Tx, e: AuditEntryInput): Promise<void> {
  await insertAuditEntry(tx, auditRow(e));
}
