import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../src/store/open.js";
import type { Db } from "../src/store/database.js";
import { StoredTree } from "../src/audit/tree-store.js";
import { MerkleTree } from "../src/audit/merkle.js";
import { createTestDatabase } from "./support/harness.js";
import { Kysely, Migrator, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { migrationProvider } from "../src/store/migrations/index.js";

// The tree stored in PostgreSQL agrees with the in-memory one (itself checked against the RFC in
// audit-unit.test.ts) for every size, across the heights where rows are kept, and after a reload.

let db: Db;
beforeAll(async () => {
  ({ db } = await openDatabase(await createTestDatabase(), 4));
});
afterAll(async () => {
  await db.destroy();
});

describe("the stored tree", () => {
  it("gives the same roots and proofs as the in-memory tree, and reloads from O(log n) rows", async () => {
    const stored = await StoredTree.load(db);
    const memory = new MerkleTree();
    const leaf = (i: number) => createHash("sha256").update(`leaf ${i}`).digest();
    // Uneven batches, so that subtrees complete inside and across appends.
    for (const batch of [1, 2, 13, 100, 140, 1, 300]) {
      const leaves = Array.from({ length: batch }, (_, j) => leaf(memory.size + j));
      await stored.append(leaves);
      for (const l of leaves) memory.append(l);
      expect(stored.root().equals(memory.root())).toBe(true);
    }
    const n = memory.size;
    for (const size of [1, 2, 3, 16, 17, 255, 256, 257, 300, 512, n]) {
      expect((await stored.rootAt(size)).equals(memory.root(size)), `root ${size}`).toBe(true);
      for (const m of [0, 1, Math.floor(size / 2), size - 1]) {
        if (m < size) expect(await stored.inclusionProof(m, size), `${m} in ${size}`).toEqual(memory.inclusionProof(m, size));
        if (m >= 1) expect(await stored.consistencyProof(m, size), `${m} -> ${size}`).toEqual(memory.consistencyProof(m, size));
      }
    }
    const reloaded = await StoredTree.load(db);
    expect(reloaded.size).toBe(n);
    expect(reloaded.root().equals(memory.root())).toBe(true);
    await reloaded.append([leaf(n)]);
    memory.append(leaf(n));
    expect(reloaded.root().equals(memory.root())).toBe(true);
    // A level-1 tile is the roots of the level-0 tiles.
    const tile = await reloaded.tile(1, 0, 2);
    expect(tile).toEqual(Buffer.concat([memory.root(256), nodeOf(memory, 256, 512)]));
  });
});

describe("migration 0010-audit-tree", () => {
  it("also runs on a data folder that already ran later-numbered migrations", async () => {
    const url = await createTestDatabase();
    const all = await migrationProvider.getMigrations();
    const before = Object.fromEntries(Object.entries(all).filter(([name]) => name !== "0010-audit-tree"));
    const old = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }) });
    const { error } = await new Migrator({ db: old, provider: { getMigrations: async () => before } }).migrateToLatest();
    await old.destroy();
    expect(error).toBeUndefined();
    const { db: upgraded } = await openDatabase(url, 1);
    try {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from audit_tree`.execute(upgraded);
      expect(rows[0]!.n).toBe(0);
    } finally {
      await upgraded.destroy();
    }
  });
});

/** MTH(D[lo:hi]) when lo is the split point of a tree of size hi: its consistency proof's last hash. */
function nodeOf(t: MerkleTree, lo: number, hi: number): Buffer {
  const p = t.consistencyProof(lo, hi);
  return p[p.length - 1]!;
}
