import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // One row: the number of entries handed out. Its row lock, taken at commit by the trigger
  // below, makes seq gap-free and in commit order (like log_head for revisions).
  await sql`
    create table audit_head (
      id boolean primary key default true check (id),
      size bigint not null
    )`.execute(db);
  await sql`insert into audit_head (id, size) values (true, 0)`.execute(db);
  await sql`
    create table audit_entries (
      -- Insertion handle only; the log's order is seq.
      id bigserial primary key,
      -- The RFC 6962 leaf index. Null until the inserting transaction commits.
      seq bigint unique,
      at timestamptz,
      kind text not null,
      agent_id text,
      token_id text,
      actor text not null,
      reason text not null default '',
      details jsonb not null default '{}',
      -- SHA-256(0x00 || canonical entry bytes), computed at commit.
      leaf_hash bytea,
      -- The canonical bytes around seq and time (computed by the app), until commit.
      leaf_prefix bytea,
      leaf_suffix bytea
    )`.execute(db);
  await sql`create index audit_entries_agent_idx on audit_entries (agent_id, seq)`.execute(db);
  await sql`create index audit_entries_kind_idx on audit_entries (kind, seq)`.execute(db);
  await sql`create index audit_entries_at_idx on audit_entries (at)`.execute(db);
  // Runs at commit (a deferred constraint trigger), so the head lock is held only from the start
  // of COMMIT to its end: no client round trip while other writers wait.
  await sql`
    create function audit_entries_sequence() returns trigger language plpgsql as $$
    declare
      s bigint;
      t timestamptz;
    begin
      update audit_head set size = size + 1
        returning size - 1, date_trunc('milliseconds', clock_timestamp()) into s, t;
      update audit_entries set
        seq = s,
        at = t,
        leaf_hash = sha256(new.leaf_prefix
          || convert_to(s::text || ',"time":"' || to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'UTF8')
          || new.leaf_suffix),
        leaf_prefix = null,
        leaf_suffix = null
      where id = new.id;
      return null;
    end
    $$`.execute(db);
  await sql`
    create constraint trigger audit_entries_sequence after insert on audit_entries
    deferrable initially deferred for each row execute function audit_entries_sequence()`.execute(db);
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
  await sql`drop function audit_entries_sequence`.execute(db);
}
