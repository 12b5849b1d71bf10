// Strict Ed25519 encoding checks that node:crypto (OpenSSL) leaves out. Pure, no I/O.
//
// OpenSSL's verify checks S < L and compares the recomputed R with the sent bytes, but accepts a
// small-order public key A or commitment R: with A = R = identity and S = 0, the equation
// [S]B = R + [h]A holds for every message, so anyone could sign for an agent registered with such
// a key ("Taming the many EdDSAs", Chalkias et al. 2020). These checks close that: canonical
// encodings only (y < p, no negative zero), and no point whose order divides 8.

const P = 2n ** 255n - 19n;
/** The order of the prime-order subgroup. */
export const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const D = mod(-121665n * inverse(121666n));
const SQRT_M1 = modPow(2n, (P - 1n) / 4n);

function mod(a: bigint): bigint {
  const r = a % P;
  return r < 0n ? r + P : r;
}

function modPow(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
  }
  return result;
}

function inverse(a: bigint): bigint {
  return modPow(a, P - 2n);
}

/** Extended twisted Edwards coordinates (RFC 8032 §5.1.4). */
interface Point {
  x: bigint;
  y: bigint;
  z: bigint;
  t: bigint;
}

function add(p: Point, q: Point): Point {
  const a = mod((p.y - p.x) * (q.y - q.x));
  const b = mod((p.y + p.x) * (q.y + q.x));
  const c = mod(p.t * 2n * D * q.t);
  const d = mod(p.z * 2n * q.z);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return { x: mod(e * f), y: mod(g * h), t: mod(e * h), z: mod(f * g) };
}

function isIdentity(p: Point): boolean {
  return p.x === 0n && p.y === p.z;
}

function littleEndian(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!);
  return n;
}

/** Decodes a 32-byte point (RFC 8032 §5.1.3), refusing non-canonical encodings. */
function decodeStrict(bytes: Uint8Array): Point | undefined {
  if (bytes.length !== 32) return undefined;
  const sign = bytes[31]! >> 7;
  const copy = Uint8Array.from(bytes);
  copy[31]! &= 0x7f;
  const y = littleEndian(copy);
  if (y >= P) return undefined;
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  const v3 = mod(v * v * v);
  let x = mod(u * v3 * modPow(u * v3 * v3 * v, (P - 5n) / 8n));
  const vx2 = mod(v * x * x);
  if (vx2 === mod(-u)) x = mod(x * SQRT_M1);
  else if (vx2 !== u) return undefined;
  // x = 0 has one encoding: the sign bit set on it would be a second ("negative zero").
  if (x === 0n && sign === 1) return undefined;
  if (Number(x & 1n) !== sign) x = P - x;
  return { x, y, z: 1n, t: mod(x * y) };
}

function hasSmallOrder(p: Point): boolean {
  let q = p;
  for (let i = 0; i < 3; i++) q = add(q, q);
  return isIdentity(q);
}

export type PointProblem = "not a canonical curve point" | "a small-order point";

/** Why 32 bytes are not acceptable as a public key or commitment R, or undefined when they are. */
export function pointProblem(bytes: Uint8Array): PointProblem | undefined {
  const p = decodeStrict(bytes);
  if (!p) return "not a canonical curve point";
  if (hasSmallOrder(p)) return "a small-order point";
  return undefined;
}

/** The checks a 64-byte signature must pass before OpenSSL's verify: canonical S, strict R. */
export function isStrictSignatureShape(signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  if (littleEndian(signature.subarray(32)) >= L) return false;
  return pointProblem(signature.subarray(0, 32)) === undefined;
}
