import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // One row: the number of entries sequenced. Its row lock serialises the sequencer (below), so
  // seq is gap-free even with several replicas sequencing.
  await sql`
    create table audit_head (
      id boolean primary key default true check (id),
      size bigint not null
    )`.execute(db);
  await sql`insert into audit_head (id, size) values (true, 0)`.execute(db);
  await sql`
    create table audit_entries (
      -- Insertion order; the log's order is seq.
      id bigserial primary key,
      -- The RFC 6962 leaf index. Null until the sequencer numbers the committed entry.
      seq bigint unique,
      at timestamptz,
      kind text not null,
      agent_id text,
      token_id text,
      actor text not null,
      reason text not null default '',
      details jsonb not null default '{}',
      -- SHA-256(0x00 || canonical entry bytes), computed when sequenced.
      leaf_hash bytea,
      -- The canonical bytes around seq and time (computed by the app), until sequenced.
      leaf_prefix bytea,
      leaf_suffix bytea
    )`.execute(db);
  await sql`create index audit_entries_agent_idx on audit_entries (agent_id, seq)`.execute(db);
  await sql`create index audit_entries_kind_idx on audit_entries (kind, seq)`.execute(db);
  await sql`create index audit_entries_at_idx on audit_entries (at)`.execute(db);
  await sql`create index audit_entries_pending_idx on audit_entries (id) where seq is null`.execute(db);
  // The sequencer: numbers committed, unsequenced entries in insertion order, in one short
  // transaction per batch. Writers never wait for it, so their commits flush in parallel; a
  // writer that held a shared lock through its commit would serialise every commit's flush.
  await sql`
    create function audit_sequence(max_rows integer) returns integer language plpgsql as $$
    declare
      s bigint;
      t timestamptz;
      n integer := 0;
      r record;
    begin
      if not exists (select 1 from audit_entries where seq is null) then
        return 0;
      end if;
      select size into s from audit_head for update;
      t := date_trunc('milliseconds', clock_timestamp());
      for r in select id, leaf_prefix, leaf_suffix from audit_entries where seq is null order by id limit max_rows loop
        update audit_entries set
          seq = s,
          at = t,
          leaf_hash = sha256(r.leaf_prefix
            || convert_to(s::text || ',"time":"' || to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'UTF8')
            || r.leaf_suffix),
          leaf_prefix = null,
          leaf_suffix = null
        where id = r.id;
        s := s + 1;
        n := n + 1;
      end loop;
      if n > 0 then
        update audit_head set size = s;
      end if;
      return n;
    end
    $$`.execute(db);
  // Every checkpoint the server signed; the signature is over the root computed at signing time.
  await sql`
    create table audit_checkpoints (
      tree_size bigint primary key,
      root_hash bytea not null,
      note text not null,
      signed_at timestamptz not null default now()
    )`.execute(db);
  // The signing key, created on first start, so that replicas sharing the database sign alike.
  await sql`
    create table audit_keys (
      id boolean primary key default true check (id),
      private_key_pem text not null,
      public_key bytea not null,
      created_at timestamptz not null default now()
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table audit_keys, audit_checkpoints, audit_entries, audit_head`.execute(db);
  await sql`drop function audit_sequence`.execute(db);
}
