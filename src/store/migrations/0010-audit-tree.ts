import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // The transparency log's Merkle tree, so that a replica keeps only O(log n) hashes in memory.
  // Row (level, idx) is the hash of the complete subtree of 256^level leaves from idx * 256^level
  // on: level 0 holds the leaf hashes, and the rows of a level are exactly the hashes of the C2SP
  // tlog-tiles at that level (tile N of level L is rows 256N to 256N+255). Hashes between these
  // heights are recomputed from at most 128 rows. Written once, when the leaves are added; never
  // updated.
  await sql`
    create table audit_tree (
      level smallint not null,
      idx bigint not null,
      hash bytea not null,
      primary key (level, idx)
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table audit_tree`.execute(db);
}
