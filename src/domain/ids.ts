import { randomBytes } from "node:crypto";
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
const TOKEN_BODY = 43;
const ID_BODY = 22;
const CHECKSUM = 6;
export const TOKEN_PREFIX = "at_";
export const TOKEN_LENGTH = TOKEN_PREFIX.length + TOKEN_BODY + CHECKSUM;
const TOKEN_SHAPE = /^at_[0-9A-Za-z]{49}$/;

function checksum(s: string): string {
  return base62(BigInt(crc32(s)), CHECKSUM);
}

/** A new secret token: at_ + base62(32 random bytes) + base62(CRC32 of what precedes). */
export function newToken(): string {
  const head = TOKEN_PREFIX + base62Bytes(randomBytes(32), TOKEN_BODY);
  return head + checksum(head);
}

/** True when the string has the token shape and its checksum matches; no I/O. */
export function isWellFormedToken(token: string): boolean {
  if (token.length !== TOKEN_LENGTH || !TOKEN_SHAPE.test(token)) return false;
  const head = token.slice(0, TOKEN_LENGTH - CHECKSUM);
  return checksum(head) === token.slice(TOKEN_LENGTH - CHECKSUM);
}

export function newAgentId(): string {
  return "agt_" + base62Bytes(randomBytes(16), ID_BODY);
}

export function newTokenId(): string {
  return "tok_" + base62Bytes(randomBytes(16), ID_BODY);
}

export const AGENT_ID_SHAPE = /^agt_[0-9A-Za-z]{22}$/;
export const TOKEN_ID_SHAPE = /^tok_[0-9A-Za-z]{22}$/;
