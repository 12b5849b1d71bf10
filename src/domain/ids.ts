import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Fixed-width base62 of a non-negative integer, left-padded with "0". */
export function base62(value: bigint, width: number): string {
  let out = "";
  let v = value;
  while (v > 0n) {
    out = ALPHABET[Number(v % 62n)] + out;
    v /= 62n;
  }
  return out.padStart(width, "0");
}

function base62Bytes(bytes: Uint8Array, width: number): string {
  return base62(BigInt("0x" + (Buffer.from(bytes).toString("hex") || "0")), width);
}

// 62^43 > 2^256 > 62^42, so 32 bytes always fit 43 characters; likewise 22 for 16 bytes.
const SECRET_BODY = 43;
const ID_BODY = 22;
const CHECKSUM = 6;
export const TOKEN_PREFIX = "at_";
export const API_KEY_PREFIX = "ak_";
/** Every secret (tokens, API keys) is prefix + 43 + 6 characters; prefixes are 3 long. */
export const TOKEN_LENGTH = 3 + SECRET_BODY + CHECKSUM;
const SECRET_SHAPE = /^[a-z]{2}_[0-9A-Za-z]{49}$/;

function checksum(s: string): string {
  return base62(BigInt(crc32(s)), CHECKSUM);
}

/** A new secret: prefix + base62(32 random bytes) + base62(CRC32 of what precedes). */
export function newSecret(prefix: typeof TOKEN_PREFIX | typeof API_KEY_PREFIX): string {
  const head = prefix + base62Bytes(randomBytes(32), SECRET_BODY);
  return head + checksum(head);
}

export function newToken(): string {
  return newSecret(TOKEN_PREFIX);
}

/** True when the string has the secret's shape and prefix and its checksum matches; no I/O. */
export function isWellFormedSecret(s: string, prefix: typeof TOKEN_PREFIX | typeof API_KEY_PREFIX): boolean {
  if (s.length !== TOKEN_LENGTH || !s.startsWith(prefix) || !SECRET_SHAPE.test(s)) return false;
  const head = s.slice(0, TOKEN_LENGTH - CHECKSUM);
  return checksum(head) === s.slice(TOKEN_LENGTH - CHECKSUM);
}

export function isWellFormedToken(token: string): boolean {
  return isWellFormedSecret(token, TOKEN_PREFIX);
}

export function newAgentId(): string {
  return "agt_" + base62Bytes(randomBytes(16), ID_BODY);
}

export function newTokenId(): string {
  return "tok_" + base62Bytes(randomBytes(16), ID_BODY);
}

export function newKeyId(): string {
  return "key_" + base62Bytes(randomBytes(16), ID_BODY);
}

export const AGENT_ID_SHAPE = /^agt_[0-9A-Za-z]{22}$/;
export const TOKEN_ID_SHAPE = /^tok_[0-9A-Za-z]{22}$/;
export const KEY_ID_SHAPE = /^key_[0-9A-Za-z]{22}$/;

/** What is stored of a secret (token or API key): its SHA-256, never the secret. */
export function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(secret).digest();
}
