import type { Db } from "../store/database.js";
import { insertTreeRows, readTreeRanges, readTreeRow, storedTreeSize, type TreeRow } from "../store/audit-tree.js";
import { nodeHash } from "./encoding.js";
import { TILE_WIDTH } from "./tiles.js";
import {
  consistencyRanges,
  frontierNodes,
  inclusionRanges,
  rangeHash,
  rangeNodes,
  rootFromFrontier,
  type TreeNode,
} from "./merkle.js";

// The server's Merkle tree, stored in PostgreSQL (table audit_tree) rather than in memory. Rows
// are kept at every 4th height, so a C2SP tlog-tile (height 8L) is a range of rows, and any other
// subtree hash is recomputed from at most 8 of them. In memory the server keeps only the
// frontier: the roots of the complete subtrees the tree decomposes into, at most one per bit of
// its size. Roots and appends use the frontier; proofs read O(log n) rows.

/** Rows are stored at heights that are multiples of this. */
const STORED_EVERY = 4;
/** Heights per tile level. */
const TILE_HEIGHT = 8;

/** A row is missing or does not match: the stored tree was changed behind the server's back. */
export class TreeStoreError extends Error {}

/** Hashes of complete subtrees, from the stored rows, in one query. */
async function nodeHashes(db: Db, nodes: readonly TreeNode[]): Promise<Map<string, Buffer>> {
  const ranges = nodes.map(({ height, index }) => {
    const stored = height - (height % STORED_EVERY);
    const width = 2 ** (height - stored);
    return { height: stored, from: index * width, to: (index + 1) * width };
  });
  const rows = await readTreeRanges(db, ranges);
  const out = new Map<string, Buffer>();
  nodes.forEach((n, i) => {
    const r = ranges[i]!;
    let layer: Buffer[] = [];
    for (let idx = r.from; idx < r.to; idx++) {
      const h = rows.get(r.height, idx);
      if (!h) throw new TreeStoreError(`the stored tree has no hash at height ${r.height}, index ${idx}`);
      layer.push(h);
    }
    while (layer.length > 1) {
      const up: Buffer[] = [];
      for (let j = 0; j < layer.length; j += 2) up.push(nodeHash(layer[j]!, layer[j + 1]!));
      layer = up;
    }
    out.set(`${n.height}:${n.index}`, layer[0]!);
  });
  return out;
}

async function rangeHashes(db: Db, ranges: readonly [number, number][]): Promise<Buffer[]> {
  const nodes: TreeNode[] = [];
  for (const [lo, hi] of ranges) rangeNodes(lo, hi, nodes);
  const hashes = await nodeHashes(db, nodes);
  return ranges.map(([lo, hi]) => rangeHash(lo, hi, (h, i) => hashes.get(`${h}:${i}`)!));
}

export class StoredTree {
  private constructor(
    private readonly db: Db,
    private treeSize: number,
    /** Hashes of frontierNodes(treeSize), largest first. */
    private frontier: Buffer[],
  ) {}

  /** Reads the stored tree's size and frontier: O(log n) rows, however long the log. */
  static async load(db: Db): Promise<StoredTree> {
    const size = await storedTreeSize(db);
    const nodes = frontierNodes(size);
    const hashes = await nodeHashes(db, nodes);
    return new StoredTree(db, size, nodes.map((n) => hashes.get(`${n.height}:${n.index}`)!));
  }

  get size(): number {
    return this.treeSize;
  }

  root(): Buffer {
    return rootFromFrontier(this.frontier);
  }

  /**
   * Appends leaves: stores their rows (and the rows of every subtree they complete), then moves
   * the frontier. Returns rows that were already stored with other hashes (none when the stored
   * tree is what this server computed); the frontier follows this server's own hashes.
   */
  async append(leaves: readonly Buffer[]): Promise<TreeRow[]> {
    if (leaves.length === 0) return [];
    const heights = frontierNodes(this.treeSize).map((n) => n.height);
    const stack = this.frontier.map((hash, i) => ({ height: heights[i]!, hash }));
    const rows: TreeRow[] = [];
    let end = this.treeSize;
    for (const leaf of leaves) {
      rows.push({ height: 0, idx: end, hash: leaf });
      end++;
      let item = { height: 0, hash: leaf };
      while (stack.length > 0 && stack[stack.length - 1]!.height === item.height) {
        const left = stack.pop()!;
        item = { height: item.height + 1, hash: nodeHash(left.hash, item.hash) };
        if (item.height % STORED_EVERY === 0) rows.push({ height: item.height, idx: end / 2 ** item.height - 1, hash: item.hash });
      }
      stack.push(item);
    }
    const conflicts = await insertTreeRows(this.db, rows);
    this.treeSize = end;
    this.frontier = stack.map((s) => s.hash);
    return conflicts;
  }

  private checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.treeSize) {
      throw new RangeError(`tree size ${size} is beyond the log's ${this.treeSize} entries`);
    }
  }

  /** The root of the first `size` leaves, from the stored rows. */
  async rootAt(size: number): Promise<Buffer> {
    this.checkSize(size);
    if (size === this.treeSize) return this.root();
    if (size === 0) return rootFromFrontier([]);
    return (await rangeHashes(this.db, [[0, size]]))[0]!;
  }

  async inclusionProof(m: number, size: number): Promise<Buffer[]> {
    this.checkSize(size);
    return rangeHashes(this.db, inclusionRanges(m, size));
  }

  async consistencyProof(m: number, size: number): Promise<Buffer[]> {
    this.checkSize(size);
    return rangeHashes(this.db, consistencyRanges(m, size));
  }

  /** Stored leaf hashes from `from` up to `to` (exclusive, at most the tree's size). */
  async leaves(from: number, to: number): Promise<Buffer[]> {
    return readTreeRow(this.db, 0, from, Math.min(to, this.treeSize));
  }

  /**
   * Tile `index` of `level` (C2SP tlog-tiles) as of a tree of `size` leaves: the concatenated
   * hashes, `width` of them; undefined if that tree does not have them all.
   */
  async tile(level: number, index: number, width: number, size = this.treeSize): Promise<Buffer | undefined> {
    if (size > this.treeSize) return undefined;
    const from = index * TILE_WIDTH;
    const available = Math.floor(size / TILE_WIDTH ** level);
    if (from + width > available) return undefined;
    const hashes = await readTreeRow(this.db, level * TILE_HEIGHT, from, from + width);
    if (hashes.length !== width) throw new TreeStoreError(`the stored tree is missing hashes of tile ${level}/${index}`);
    return Buffer.concat(hashes);
  }
}
