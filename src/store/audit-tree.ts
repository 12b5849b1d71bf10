import { sql } from "kysely";
import type { Db } from "./database.js";

// The transparency log's stored Merkle tree (table audit_tree, migration 0010): row (height, idx)
// is the hash of the complete subtree of 2^height leaves starting at leaf idx * 2^height.

export interface TreeRow {
  height: number;
  idx: number;
  hash: Buffer;
}

/** Leaves in the stored tree: rows are written a batch per statement, so height 0 is gap-free. */
export async function storedTreeSize(db: Db): Promise<number> {
  const r = await db
    .selectFrom("audit_tree")
    .select("idx")
    .where("height", "=", 0)
    .orderBy("idx", "desc")
    .limit(1)
    .executeTakeFirst();
  return r ? Number(r.idx) + 1 : 0;
}

/**
 * Stores rows that are not stored yet; returns those already stored with another hash (another
 * replica, or someone with database access, wrote something else there).
 */
export async function insertTreeRows(db: Db, rows: readonly TreeRow[]): Promise<TreeRow[]> {
  if (rows.length === 0) return [];
  const { rows: inserted } = await sql<{ height: number; idx: string }>`
    insert into audit_tree (height, idx, hash)
    select * from unnest(${rows.map((r) => r.height)}::smallint[], ${rows.map((r) => String(r.idx))}::bigint[], ${rows.map((r) => r.hash)}::bytea[])
    on conflict (height, idx) do nothing
    returning height, idx`.execute(db);
  if (inserted.length === rows.length) return [];
  const done = new Set(inserted.map((r) => `${r.height}:${r.idx}`));
  const others = rows.filter((r) => !done.has(`${r.height}:${r.idx}`));
  const stored = await readTreeRanges(
    db,
    others.map((r) => ({ height: r.height, from: r.idx, to: r.idx + 1 })),
  );
  return others.filter((r) => !stored.get(r.height, r.idx)?.equals(r.hash));
}

export interface TreeRange {
  height: number;
  /** First idx. */
  from: number;
  /** Last idx + 1. */
  to: number;
}

/** Stored rows, by height and idx. */
export class TreeRows {
  private readonly rows = new Map<string, Buffer>();

  set(height: number, idx: number, hash: Buffer): void {
    this.rows.set(`${height}:${idx}`, hash);
  }

  get(height: number, idx: number): Buffer | undefined {
    return this.rows.get(`${height}:${idx}`);
  }
}

/** The stored rows in the given ranges, in one query. */
export async function readTreeRanges(db: Db, ranges: readonly TreeRange[]): Promise<TreeRows> {
  const out = new TreeRows();
  if (ranges.length === 0) return out;
  // One primary-key range scan per range, whatever the table's size: without the OFFSET 0 fence
  // the planner flattens the subquery into a hash join over a scan of the whole table.
  const { rows } = await sql<{ height: number; idx: string; hash: Buffer }>`
    select q.height, t.idx, t.hash
    from unnest(${ranges.map((r) => r.height)}::smallint[], ${ranges.map((r) => String(r.from))}::bigint[], ${ranges.map((r) => String(r.to))}::bigint[]) as q(height, lo, hi)
    cross join lateral (
      select idx, hash from audit_tree where height = q.height and idx >= q.lo and idx < q.hi offset 0
    ) t`.execute(db);
  for (const r of rows) out.set(r.height, Number(r.idx), r.hash);
  return out;
}

/** Consecutive rows of one height, from `from` up to `to` (exclusive); stops at the first gap. */
export async function readTreeRow(db: Db, height: number, from: number, to: number): Promise<Buffer[]> {
  const rows = await db
    .selectFrom("audit_tree")
    .select(["idx", "hash"])
    .where("height", "=", height)
    .where("idx", ">=", String(from) as never)
    .where("idx", "<", String(to) as never)
    .orderBy("idx")
    .execute();
  const out: Buffer[] = [];
  for (const r of rows) {
    if (Number(r.idx) !== from + out.length) break;
    out.push(r.hash);
  }
  return out;
}
