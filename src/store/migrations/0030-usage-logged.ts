import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // How much of each count the transparency log already holds. A kill logs an agent's open
  // buckets at once, and counts that arrive after a bucket's summary are logged as a further
  // entry: both need to know what was logged, row by row. Not indexed, so updates stay HOT.
  await sql`alter table usage_counts add column logged bigint not null default 0`.execute(db);
  await sql`update usage_counts set logged = n where bucket < (select logged_before from usage_trail_head)`.execute(db);
  // Gateways (nginx auth_request, Envoy ext_authz) count the decisions they make.
  await sql`alter table usage_counts drop constraint usage_counts_source_check`.execute(db);
  await sql`alter table usage_counts add constraint usage_counts_source_check check (source in ('report', 'gateway', 'introspect'))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`delete from usage_counts where source = 'gateway'`.execute(db);
  await sql`alter table usage_counts drop constraint usage_counts_source_check`.execute(db);
  await sql`alter table usage_counts add constraint usage_counts_source_check check (source in ('report', 'introspect'))`.execute(db);
  await sql`alter table usage_counts drop column logged`.execute(db);
}
