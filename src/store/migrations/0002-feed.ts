import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // The highest revision compaction has removed. A cursor below it may have missed events, so
  // it gets OUT_OF_RANGE. A row of its own, so that compaction never takes log_head's lock.
  await sql`
    create table feed_compaction (
      id boolean primary key default true check (id),
      revision bigint not null
    )`.execute(db);
  await sql`insert into feed_compaction (id, revision) values (true, 0)`.execute(db);
  // Compaction looks for token events whose token has expired.
  await sql`create index revocations_token_expiry_idx on revocations (expires_at) where token_id is not null`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index revocations_token_expiry_idx`.execute(db);
  await sql`drop table feed_compaction`.execute(db);
}
