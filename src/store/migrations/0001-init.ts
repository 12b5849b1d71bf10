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
      -- Insertion order only; the log's order is revision.
      id bigserial primary key,
      -- Null until the sequencer (below) numbers the committed event.
      revision bigint unique,
      token_id text,
      agent_id text not null,
      reason text not null,
      revoked_by text not null,
      revoked_at timestamptz not null default now(),
      expires_at timestamptz
    )`.execute(db);
  await sql`create index revocations_pending_idx on revocations (id) where revision is null`.execute(db);
  // The sequencer: numbers committed, unnumbered events in insertion order, in one short
  // transaction, and wakes every replica. log_head's row lock serialises sequencers, so revisions
  // are gap-free and commit (and become visible) in order; revokers commit in parallel and never
  // hold it, so their commits' disk flushes are shared instead of queued behind one lock.
  await sql`
    create function revocations_sequence() returns bigint language plpgsql as $$
    declare
      h bigint;
      n integer := 0;
      r record;
    begin
      if not exists (select 1 from revocations where revision is null) then
        return null;
      end if;
      -- One sequencer at a time; the others do not queue behind it (each would hold the lock
      -- through a commit of its own): their events are numbered by this run or the next.
      select revision into h from log_head for update skip locked;
      if not found then
        return null;
      end if;
      for r in select id, token_id, agent_id from revocations where revision is null order by id loop
        h := h + 1;
        n := n + 1;
        update revocations set revision = h where id = r.id;
        if r.token_id is not null then
          update tokens set revoked_revision = h where id = r.token_id;
        else
          update agents set revoked_revision = h where id = r.agent_id;
        end if;
      end loop;
      if n > 0 then
        update log_head set revision = h;
        perform pg_notify('agentid_revocations', h::text);
      end if;
      return h;
    end
    $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function revocations_sequence`.execute(db);
  await sql`drop table revocations, log_head, tokens, agents`.execute(db);
}
