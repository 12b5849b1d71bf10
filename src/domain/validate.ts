import { invalidArgument } from "./errors.js";
import { AGENT_ID_SHAPE, TOKEN_ID_SHAPE } from "./ids.js";

// What PostgreSQL cannot store: NUL in text (and \u0000 in jsonb), and UTF-16 lone surrogates,
// which have no UTF-8 form (jsonb refuses their \u escapes; text would silently get U+FFFD).
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why a string cannot be stored as PostgreSQL text, or undefined. Every request string passes this (validate-message.ts). */
export function storableTextProblem(value: string): string | undefined {
  if (value.includes("\u0000")) return "must not contain NUL characters";
  if (LONE_SURROGATE.test(value)) return "must be valid Unicode (it has a lone UTF-16 surrogate)";
  return undefined;
}

/** The largest seq, revision or tree size PostgreSQL's bigint holds: the bound of every page token. */
const MAX_INT8 = 2n ** 63n - 1n;

/** Decodes an opaque page token (base64url of a non-negative bigint) made by encodePageToken. */
export function decodePageToken(token: string, what: string): bigint {
  const text = Buffer.from(token, "base64url").toString();
  if (!/^[0-9]{1,19}$/.test(text) || BigInt(text) > MAX_INT8) throw invalidArgument("page_token", `is not a token from a previous ${what} response`);
  return BigInt(text);
}

export function encodePageToken(n: bigint): string {
  return Buffer.from(n.toString()).toString("base64url");
}

// Printable ASCII without spaces: what RFC 6749 allows in a scope token, and safe in logs.
const NO_SPACE = /^[\x21-\x7e]+$/;

/**
 * What free text may not hold, because a terminal or a log viewer would act on it instead of
 * showing it: C0 controls (tab, newline and ESC included), DEL, C1 controls (U+009B is a CSI on
 * its own), the line and paragraph separators, and the bidirectional controls that reorder what
 * is shown (U+061C, U+200E-F, U+202A-E, U+2066-9). The CLI escapes the same set in what it prints.
 */
export const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

/**
 * The one check for free text (names, reasons, label values, details) on every surface: bounded,
 * storable, and shown as written. Empty is refused unless `optional`.
 */
export function requireText(field: string, value: string, max: number, o: { optional?: boolean } = {}): string {
  if (value.length === 0 && !o.optional) throw invalidArgument(field, "is required");
  if (value.length > max) throw invalidArgument(field, `must be at most ${max} characters`);
  const unsafe = UNSAFE_TEXT.exec(value);
  if (unsafe) {
    const at = `U+${unsafe[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")} at character ${unsafe.index + 1}`;
    const what = unsafe[0] >= "\u0600" ? "a text direction control" : "a control character";
    throw invalidArgument(field, `must not contain ${what} (${at})`);
  }
  const problem = storableTextProblem(value);
  if (problem) throw invalidArgument(field, problem);
  return value;
}

/**
 * Bounds a field by the room it takes in its log entry (as JSON, escapes included), so that a
 * request within every per-item limit is refused by name rather than failing at the log.
 */
export function requireEntryRoom(field: string, value: unknown, max: number): void {
  const used = JSON.stringify(value).length;
  if (used > max) throw invalidArgument(field, `takes ${used} characters in the log entry, at most ${max} (fewer or shorter entries)`);
}

export function requireAgentId(field: string, value: string): string {
  if (value.length === 0) throw invalidArgument(field, "is required");
  if (!AGENT_ID_SHAPE.test(value)) throw invalidArgument(field, "is not an agent id (agt_ followed by 22 base62 characters)");
  return value;
}

export function requireTokenId(field: string, value: string): string {
  if (value.length === 0) throw invalidArgument(field, "is required");
  if (!TOKEN_ID_SHAPE.test(value)) throw invalidArgument(field, "is not a token id (tok_ followed by 22 base62 characters)");
  return value;
}

/** A de-duplicated list of space-free words, each at most maxLen, at most maxCount. */
export function requireWords(field: string, values: readonly string[], maxLen: number, maxCount: number): string[] {
  if (values.length > maxCount) throw invalidArgument(field, `at most ${maxCount} entries`);
  values.forEach((v, i) => {
    if (v.length === 0 || v.length > maxLen || !NO_SPACE.test(v)) {
      throw invalidArgument(`${field}[${i}]`, `must be 1 to ${maxLen} printable characters without spaces`);
    }
  });
  return [...new Set(values)];
}

export function requireLabels(field: string, labels: Record<string, string>): Record<string, string> {
  const keys = Object.keys(labels);
  if (keys.length > 64) throw invalidArgument(field, "at most 64 labels");
  for (const k of keys) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._\/-]{0,62}$/.test(k)) {
      throw invalidArgument(`${field}[${JSON.stringify(k.slice(0, 70))}]`, "key must be 1 to 63 of A-Z a-z 0-9 . _ / -, starting with a letter or digit");
    }
    requireText(`${field}[${k}]`, labels[k]!, 256, { optional: true });
  }
  return labels;
}
