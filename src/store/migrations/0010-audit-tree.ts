import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // The transparency log's Merkle tree, so that a replica keeps only O(log n) hashes in memory.
  // Row (height, idx) is the hash of the complete subtree of 2^height leaves from idx * 2^height
  // on, for every height that is a multiple of 4: height 0 holds the leaf hashes, and the rows of
  // height 8L are exactly the hashes of the C2SP tlog-tiles of level L (tile N is rows 256N to
  // 256N+255). Hashes at other heights are recomputed from at most 8 rows. About 1.07 rows per
  // entry, written once when the entry joins the tree, never updated.
  await sql`
    create table audit_tree (
      height smallint not null,
      idx bigint not null,
      hash bytea not null,
      primary key (height, idx)
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table audit_tree`.execute(db);
}
