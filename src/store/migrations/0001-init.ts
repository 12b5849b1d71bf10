import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table agents (
      id text primary key,
      -- Insertion order, for stable keyset pagination (timestamps can tie).
      seq bigserial not null unique,
      name text not null,
      public_key bytea not null,
      labels jsonb not null default '{}',
      status text not null check (status in ('ACTIVE', 'REVOKED')),
      created_at timestamptz not null default now(),
      revoked_at timestamptz,
      revoked_reason text,
      revoked_by text,
      revoked_revision bigint
    )`.execute(db);
  await sql`
    create table tokens (
      id text primary key,
      token_hash bytea not null unique,
      -- No foreign key: agents are never deleted, Issue checks the agent in the same statement,
      -- and the key-share lock a foreign key takes on the agent row makes concurrent issuance for
      -- one agent contend on it (multixacts).
      agent_id text not null,
      scopes text[] not null,
      audiences text[] not null,
      issued_at timestamptz not null default now(),
      expires_at timestamptz not null,
      revoked_at timestamptz,
      revoked_revision bigint
    )`.execute(db);
  await sql`create index tokens_agent_idx on tokens (agent_id)`.execute(db);
  await sql`
    create table log_head (
      id boolean primary key default true check (id),
      revision bigint not null
    )`.execute(db);
  await sql`insert into log_head (id, revision) values (true, 0)`.execute(db);
  await sql`
    create table revocations (
      revision bigint primary key,
      token_id text,
      agent_id text not null,
      reason text not null,
      revoked_by text not null,
      revoked_at timestamptz not null default now(),
      expires_at timestamptz
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table revocations, log_head, tokens, agents`.execute(db);
}
