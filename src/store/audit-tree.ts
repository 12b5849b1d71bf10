import { sql } from "kysely";
import type { Db } from "./database.js";

// The transparency log's stored Merkle tree (table audit_tree, migration 0010): row (level, idx)
// is the hash of the complete subtree of 256^level leaves starting at leaf idx * 256^level.

export interface TreeRow {
  level: number;
  idx: number;
  hash: Buffer;
}

/** Leaves in the stored tree: rows are written a batch per statement, so level 0 is gap-free. */
export async function storedTreeSize(db: Db): Promise<number> {
  const r = await db
    .selectFrom("audit_tree")
    .select("idx")
    .where("level", "=", 0)
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
  const { rows: inserted } = await sql<{ level: number; idx: string }>`
    insert into audit_tree (level, idx, hash)
    select * from unnest(${rows.map((r) => r.level)}::smallint[], ${rows.map((r) => String(r.idx))}::bigint[], ${rows.map((r) => r.hash)}::bytea[])
    on conflict (level, idx) do nothing
    returning level, idx`.execute(db);
  if (inserted.length === rows.length) return [];
  const done = new Set(inserted.map((r) => `${r.level}:${r.idx}`));
  const others = rows.filter((r) => !done.has(`${r.level}:${r.idx}`));
  const stored = await readTreeRanges(
    db,
    others.map((r) => ({ level: r.level, from: r.idx, to: r.idx + 1 })),
  );
  return others.filter((r) => !stored.get(r.level, r.idx)?.equals(r.hash));
}

export interface TreeRange {
  level: number;
  /** First idx. */
  from: number;
  /** Last idx + 1. */
  to: number;
}

/** Stored rows, by level and idx. */
export class TreeRows {
  private readonly rows = new Map<string, Buffer>();

  set(level: number, idx: number, hash: Buffer): void {
    this.rows.set(`${level}:${idx}`, hash);
  }

  get(level: number, idx: number): Buffer | undefined {
    return this.rows.get(`${level}:${idx}`);
  }
}

/** The stored rows in the given ranges, in one query. */
export async function readTreeRanges(db: Db, ranges: readonly TreeRange[]): Promise<TreeRows> {
  const out = new TreeRows();
  if (ranges.length === 0) return out;
  const { rows } = await sql<{ level: number; idx: string; hash: Buffer }>`
    select t.level, t.idx, t.hash
    from unnest(${ranges.map((r) => r.level)}::smallint[], ${ranges.map((r) => String(r.from))}::bigint[], ${ranges.map((r) => String(r.to))}::bigint[]) as q(level, lo, hi)
    join audit_tree t on t.level = q.level and t.idx >= q.lo and t.idx < q.hi`.execute(db);
  for (const r of rows) out.set(r.level, Number(r.idx), r.hash);
  return out;
}

/** Consecutive rows of one level, from `from` up to `to` (exclusive); stops at the first gap. */
export async function readTreeLevel(db: Db, level: number, from: number, to: number): Promise<Buffer[]> {
  const rows = await db
    .selectFrom("audit_tree")
    .select(["idx", "hash"])
    .where("level", "=", level)
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
