import { randomBytes } from "node:crypto";
import type { Db, Tx } from "../store/database.js";
import type { LogWaker } from "../store/sequencer.js";
import { insertAuditEntry, type AuditRow } from "../store/audit.js";
import type { AuditTemplate } from "../store/revocations.js";
import { leafPrefix, leafSuffix } from "./encoding.js";
import { canonicalJson, type JsonValue } from "./canonical-json.js";

/**
 * What happened. The kinds written today; others (key.created, policy.changed,
 * activity.reported, ...) are accepted as long as they match KIND_SHAPE.
 */
export type KnownKind = "agent.registered" | "token.issued" | "token.revoked" | "agent.revoked";

// Lower-case dotted words, e.g. "policy.changed": stable, greppable, safe in any output.
export const KIND_SHAPE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const MAX_KIND = 64;
const MAX_TEXT = 1024;
export const MAX_DETAILS = 16 * 1024;

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
    salt: randomBytes(16).toString("hex"),
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

/**
 * Runs `work`, which appends to the transparency log, in one transaction, and once it commits
 * wakes the log's sequencer: the entries are numbered now, not at its next safety tick.
 */
export async function auditedTransaction<T>(db: Db, logs: LogWaker, work: (tx: Tx) => Promise<T>): Promise<T> {
  const result = await db.transaction().execute(work);
  logs.wake("audit");
  return result;
}

// Placeholders for values only the database knows when it writes the entry (migration 0005's
// revoke functions fill them in). Canonical JSON escapes every control character inside strings,
// so these raw characters cannot occur in a rendered entry otherwise.
const HOLE = { agentId: "\u0001", tokenId: "\u0002", count: "\u0003" } as const;

/**
 * An entry rendered as a template: `agentId`/`tokenId` "from the database" are filled in with the
 * row's ids, and the details key `countKey` with the number the database counts. Same checks and
 * bytes as auditRow, so a filled-in template is exactly the row auditRow would have made.
 */
export function auditTemplate(
  e: Omit<AuditEntryInput, "agentId" | "tokenId"> & { agentId: string | "from-database"; tokenId: string | "from-database"; countKey?: string },
): AuditTemplate {
  const { countKey, ...rest } = e;
  const agentFromDb = e.agentId === "from-database";
  const tokenFromDb = e.tokenId === "from-database";
  const row = auditRow({
    ...rest,
    agentId: agentFromDb ? "" : e.agentId,
    tokenId: tokenFromDb ? "" : e.tokenId,
    details: countKey ? { ...e.details, [countKey]: 0 } : e.details,
  });
  let prefix = row.leafPrefix.subarray(1).toString("utf8");
  let suffix = row.leafSuffix.toString("utf8");
  let detailsJson = row.detailsJson;
  // Each value sits right after its key, outside any string (quotes inside strings are escaped).
  const fill = (text: string, key: string, rendered: string, hole: string): string => {
    const at = text.indexOf(`"${key}":${rendered}`);
    if (at < 0) throw new Error(`audit template: no ${key} to fill`);
    return text.slice(0, at) + `"${key}":${hole}` + text.slice(at + key.length + 3 + rendered.length);
  };
  if (agentFromDb) prefix = fill(prefix, "agent_id", '""', HOLE.agentId);
  if (tokenFromDb) suffix = fill(suffix, "token_id", '""', HOLE.tokenId);
  if (countKey) {
    // details is the only object in the prefix with this key, and sorted keys put it first or after a comma.
    const inPrefix = prefix.indexOf(`"details":${detailsJson}`);
    if (inPrefix < 0) throw new Error("audit template: details not found");
    const filled = fill(detailsJson, countKey, "0", HOLE.count);
    prefix = prefix.slice(0, inPrefix) + `"details":${filled}` + prefix.slice(inPrefix + 10 + detailsJson.length);
    detailsJson = filled;
  }
  return { prefix, suffix, detailsJson };
}
