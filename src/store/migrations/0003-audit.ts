import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // One row: the number of entries handed out. Its row lock, taken last in a writing transaction,
  // makes seq gap-free and in commit order (like log_head for revisions).
  await sql`
    create table audit_head (
      id boolean primary key default true check (id),
      size bigint not null
    )`.execute(db);
  await sql`insert into audit_head (id, size) values (true, 0)`.execute(db);
  await sql`
    create table audit_entries (
      seq bigint primary key,
      at timestamptz not null,
      kind text not null,
      agent_id text,
      token_id text,
      actor text not null,
      reason text not null default '',
      details jsonb not null default '{}',
      -- SHA-256(0x00 || canonical entry bytes), computed when appended.
      leaf_hash bytea not null
    )`.execute(db);
  await sql`create index audit_entries_agent_idx on audit_entries (agent_id, seq)`.execute(db);
  await sql`create index audit_entries_kind_idx on audit_entries (kind, seq)`.execute(db);
  await sql`create index audit_entries_at_idx on audit_entries (at)`.execute(db);
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
}
