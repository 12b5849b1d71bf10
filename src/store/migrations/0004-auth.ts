import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table api_keys (
      id text primary key,
      key_hash bytea not null unique,
      name text not null,
      role text not null check (role in ('admin', 'issuer', 'resource_server')),
      audiences text[] not null default '{}',
      created_at timestamptz not null default now(),
      created_by text not null,
      revoked_at timestamptz
    )`.execute(db);
  await sql`alter table agents add column allowed_scopes text[] not null default '{}'`.execute(db);
  // Replay protection for agents' signed Issue requests; rows outlive the skew window only.
  await sql`
    create table agent_nonces (
      agent_id text not null references agents (id),
      nonce text not null,
      expires_at timestamptz not null,
      primary key (agent_id, nonce)
    )`.execute(db);
  await sql`create index agent_nonces_expiry_idx on agent_nonces (expires_at)`.execute(db);
  // Introspections and incidents per agent per minute; the trust score reads these.
  await sql`
    create table agent_activity (
      agent_id text not null references agents (id),
      minute timestamptz not null,
      introspections bigint not null default 0,
      scope_violations bigint not null default 0,
      incidents bigint not null default 0,
      primary key (agent_id, minute)
    )`.execute(db);
  await sql`
    create table activity_reports (
      id bigserial primary key,
      agent_id text not null references agents (id),
      kind text not null,
      detail text not null,
      reported_by text not null,
      at timestamptz not null default now()
    )`.execute(db);
  await sql`create index activity_reports_agent_idx on activity_reports (agent_id, at)`.execute(db);
  await sql`
    create table trust_scores (
      id bigserial primary key,
      agent_id text not null references agents (id),
      score double precision not null,
      factors jsonb not null,
      computed_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index trust_scores_agent_idx on trust_scores (agent_id, computed_at)`.execute(db);
  await sql`
    create table policies (
      name text primary key,
      kind text not null check (kind in ('scope_violations', 'trust_below')),
      threshold integer not null,
      window_seconds integer,
      created_at timestamptz not null default now(),
      created_by text not null
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table policies, trust_scores, activity_reports, agent_activity, agent_nonces, api_keys`.execute(db);
  await sql`alter table agents drop column allowed_scopes`.execute(db);
}
