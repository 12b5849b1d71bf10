import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // What resource servers (source 'report') and Introspect (source 'introspect') saw agents do,
  // per time bucket. Agent ids come from resolved tokens, so no foreign key is checked per row.
  // Rows are counters updated in place batch after batch: room on each page keeps those updates
  // HOT (no index writes).
  await sql`
    create table usage_counts (
      agent_id text not null,
      bucket timestamptz not null,
      reporter text not null,
      source text not null check (source in ('report', 'introspect')),
      audience text not null,
      scope text not null,
      outcome text not null,
      n bigint not null,
      first_seen timestamptz not null,
      last_seen timestamptz not null,
      primary key (agent_id, bucket, reporter, source, audience, scope, outcome)
    ) with (fillfactor = 70)`.execute(db);
  await sql`create index usage_counts_bucket_idx on usage_counts (bucket)`.execute(db);
  // Every scope and audience an agent has used, with when it first did: the novel-access factor.
  await sql`
    create table agent_access (
      agent_id text not null,
      kind text not null check (kind in ('scope', 'audience')),
      name text not null,
      first_seen timestamptz not null default now(),
      primary key (agent_id, kind, name)
    )`.execute(db);
  // Counts reporters could not keep (their buffers were full), per reporter and bucket.
  await sql`
    create table usage_drops (
      reporter text not null,
      bucket timestamptz not null,
      n bigint not null,
      primary key (reporter, bucket)
    )`.execute(db);
  // One row: every bucket before it has been summarised into the transparency log.
  await sql`create table usage_trail_head (id boolean primary key check (id), logged_before timestamptz not null)`.execute(db);
  await sql`insert into usage_trail_head values (true, now())`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table usage_trail_head, usage_drops, agent_access, usage_counts`.execute(db);
}
