import { createHash } from "node:crypto";
import { canonicalJson, type JsonValue } from "./canonical-json.js";

// The canonical entry encoding, documented in docs/transparency-log.md: the entry's fields in
// canonical JSON (canonical-json.ts), so that any language can reproduce the exact bytes.

/** The fields a leaf covers. Absent ids and reasons are empty strings, never missing keys. */
export interface EntryContent {
  seq: bigint;
  time: Date;
  kind: string;
  agentId: string;
  tokenId: string;
  actor: string;
  reason: string;
  details: { [key: string]: JsonValue };
  /**
   * Random per entry (32 hex digits), so that a leaf hash cannot confirm a guess of an entry a
   * caller may not read. "" for entries written before salts: their bytes have no salt key.
   */
  salt: string;
}

/** The content of a stored entry row (seq, at, ids, details as read from PostgreSQL). */
export function storedContent(r: Omit<EntryContent, "time" | "details"> & { at: Date; details: Record<string, unknown> }): EntryContent {
  const { at, details, ...rest } = r;
  return { ...rest, time: at, details: details as { [key: string]: JsonValue } };
}

/** RFC 3339 in UTC with exactly three fractional digits, as Date.toISOString writes it. */
export function entryTime(t: Date): string {
  return t.toISOString();
}

// Key order is fixed by the sort: actor, agent_id, details, kind, reason, salt, seq, time,
// token_id. Once committed, the sequencer (agentid_sequence_audit, migration 0025-entry-salt)
// puts seq and time between the two halves below, in SQL, and reads the salt back from the end
// of the first half; the halves must stay in step with entryBytes.

/** Everything before the seq value, with the 0x00 leaf prefix. */
export function leafPrefix(e: Omit<EntryContent, "seq" | "time">): Buffer {
  const head =
    `{"actor":${JSON.stringify(e.actor)},"agent_id":${JSON.stringify(e.agentId)},` +
    `"details":${canonicalJson(e.details)},"kind":${JSON.stringify(e.kind)},"reason":${JSON.stringify(e.reason)},` +
    `${e.salt ? `"salt":${JSON.stringify(e.salt)},` : ""}"seq":`;
  return Buffer.concat([Buffer.from([0]), Buffer.from(head, "utf8")]);
}

/** Everything after the time value. */
export function leafSuffix(e: Pick<EntryContent, "tokenId">): Buffer {
  return Buffer.from(`,"token_id":${JSON.stringify(e.tokenId)}}`, "utf8");
}

/** The canonical bytes of an entry (without the leaf prefix). */
export function entryBytes(e: EntryContent): Buffer {
  return Buffer.from(
    canonicalJson({
      actor: e.actor,
      agent_id: e.agentId,
      details: e.details,
      kind: e.kind,
      reason: e.reason,
      ...(e.salt ? { salt: e.salt } : {}),
      seq: Number(e.seq),
      time: entryTime(e.time),
      token_id: e.tokenId,
    }),
    "utf8",
  );
}

export function leafHash(bytes: Uint8Array): Buffer {
  return createHash("sha256").update(Buffer.from([0])).update(bytes).digest();
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash("sha256").update(Buffer.from([1])).update(left).update(right).digest();
}

export const EMPTY_ROOT = createHash("sha256").digest();
