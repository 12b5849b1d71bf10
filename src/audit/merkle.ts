import { EMPTY_ROOT, nodeHash } from "./encoding.js";

// RFC 6962 §2.1. Proofs and roots are computed from the hashes of complete aligned subtrees
// (height h, index i: leaves i*2^h to (i+1)*2^h - 1), wherever those are kept: in memory here
// (MerkleTree, for verifiers), or in PostgreSQL (tree-store.ts, for the server).

const HASH = 32;
const CHUNK = 1 << 14; // hashes per buffer: large flat buffers, not one object per hash

/** A growable array of 32-byte hashes in flat buffers. */
class HashArray {
  private readonly chunks: Buffer[] = [];
  length = 0;

  push(h: Uint8Array): void {
    const c = Math.floor(this.length / CHUNK);
    if (c === this.chunks.length) this.chunks.push(Buffer.allocUnsafe(CHUNK * HASH));
    this.chunks[c]!.set(h, (this.length % CHUNK) * HASH);
    this.length++;
  }

  get(i: number): Buffer {
    const off = (i % CHUNK) * HASH;
    return this.chunks[Math.floor(i / CHUNK)]!.subarray(off, off + HASH);
  }
}

// Sizes may pass 2^31, so no bit operators on them.
function isPowerOfTwo(n: number): boolean {
  return n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** Largest power of two strictly less than n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** A complete aligned subtree: the 2^height leaves from index * 2^height on. */
export interface TreeNode {
  height: number;
  index: number;
}

/**
 * The complete aligned subtrees whose hashes make up MTH(D[lo:hi]). Ranges from the RFC
 * recursions always start on a boundary of their split, so this bottoms out in such subtrees.
 */
export function rangeNodes(lo: number, hi: number, out: TreeNode[] = []): TreeNode[] {
  const n = hi - lo;
  if (isPowerOfTwo(n) && lo % n === 0) {
    out.push({ height: Math.log2(n), index: lo / n });
    return out;
  }
  const k = splitPoint(n);
  rangeNodes(lo, lo + k, out);
  return rangeNodes(lo + k, hi, out);
}

/** MTH(D[lo:hi]) from the hashes of its complete subtrees (rangeNodes). */
export function rangeHash(lo: number, hi: number, node: (height: number, index: number) => Buffer): Buffer {
  const n = hi - lo;
  if (isPowerOfTwo(n) && lo % n === 0) return node(Math.log2(n), lo / n);
  const k = splitPoint(n);
  return nodeHash(rangeHash(lo, lo + k, node), rangeHash(lo + k, hi, node));
}

/** The ranges whose MTHs form PATH(m, D[0:size]), RFC 6962 §2.1.1, sibling first. */
export function inclusionRanges(m: number, size: number): [number, number][] {
  if (m < 0 || m >= size) throw new RangeError(`leaf ${m} is not in a tree of size ${size}`);
  const out: [number, number][] = [];
  const path = (m: number, lo: number, hi: number): void => {
    if (hi - lo === 1) return;
    const k = splitPoint(hi - lo);
    if (m < k) {
      path(m, lo, lo + k);
      out.push([lo + k, hi]);
    } else {
      path(m - k, lo + k, hi);
      out.push([lo, lo + k]);
    }
  };
  path(m, 0, size);
  return out;
}

/** The ranges whose MTHs form PROOF(m, D[0:size]) = SUBPROOF(m, D[0:size], true), RFC 6962 §2.1.2. */
export function consistencyRanges(m: number, size: number): [number, number][] {
  if (m < 1 || m > size) throw new RangeError(`first size ${m} must be from 1 to ${size}`);
  const out: [number, number][] = [];
  const sub = (m: number, lo: number, hi: number, b: boolean): void => {
    const n = hi - lo;
    if (m === n) {
      if (!b) out.push([lo, hi]);
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      sub(m, lo, lo + k, b);
      out.push([lo + k, hi]);
    } else {
      sub(m - k, lo + k, hi, false);
      out.push([lo, lo + k]);
    }
  };
  sub(m, 0, size, true);
  return out;
}

/** The complete subtrees a tree of `size` leaves decomposes into, largest (leftmost) first. */
export function frontierNodes(size: number): TreeNode[] {
  return size === 0 ? [] : rangeNodes(0, size);
}

/** The root of a tree from the hashes of its frontierNodes, in the same order. */
export function rootFromFrontier(hashes: readonly Buffer[]): Buffer {
  if (hashes.length === 0) return Buffer.from(EMPTY_ROOT);
  let r = hashes[hashes.length - 1]!;
  for (let i = hashes.length - 2; i >= 0; i--) r = nodeHash(hashes[i]!, r);
  return r;
}

/** An in-memory tree, for verifiers: keeps every complete aligned subtree hash (64 bytes a leaf). */
export class MerkleTree {
  private readonly levels: HashArray[] = [new HashArray()];

  get size(): number {
    return this.levels[0]!.length;
  }

  leaf(i: number): Buffer {
    return this.levels[0]!.get(i);
  }

  append(leafHash: Uint8Array): void {
    if (leafHash.length !== HASH) throw new Error("leaf hash must be 32 bytes");
    this.levels[0]!.push(leafHash);
    // Each time the new node is a right child, its parent subtree becomes complete.
    let index = this.size - 1;
    for (let h = 0; index % 2 === 1; h++) {
      const parent = nodeHash(this.levels[h]!.get(index - 1), this.levels[h]!.get(index));
      if (!this.levels[h + 1]) this.levels.push(new HashArray());
      this.levels[h + 1]!.push(parent);
      index = (index - 1) / 2;
    }
  }

  private readonly node = (height: number, index: number): Buffer => this.levels[height]!.get(index);

  root(size = this.size): Buffer {
    this.checkSize(size);
    return size === 0 ? Buffer.from(EMPTY_ROOT) : rangeHash(0, size, this.node);
  }

  inclusionProof(m: number, size: number): Buffer[] {
    this.checkSize(size);
    return inclusionRanges(m, size).map(([lo, hi]) => rangeHash(lo, hi, this.node));
  }

  consistencyProof(m: number, size: number): Buffer[] {
    this.checkSize(size);
    return consistencyRanges(m, size).map(([lo, hi]) => rangeHash(lo, hi, this.node));
  }

  private checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.size) {
      throw new RangeError(`tree size ${size} is beyond the log's ${this.size} entries`);
    }
  }
}

/** Root hash from a leaf and its audit path (RFC 9162 §2.1.3.2). */
export function rootFromInclusionProof(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[]): Buffer | undefined {
  if (index < 0 || index >= size) return undefined;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined;
}

/** True when proof shows oldRoot (size m) is a prefix of newRoot (size n), RFC 9162 §2.1.4.2. */
export function verifyConsistency(m: number, n: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (m < 1 || m > n) return false;
  if (m === n) return proof.length === 0 && Buffer.from(oldRoot).equals(Buffer.from(newRoot));
  const path = [...proof];
  // When m is a power of two the old root is itself the first node of the proof.
  if (isPowerOfTwo(m)) path.unshift(oldRoot);
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (path.length === 0) return false;
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(Buffer.from(oldRoot)) && sr.equals(Buffer.from(newRoot));
}
