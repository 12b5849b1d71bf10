import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.
//
// One sequenced-log mechanism for both logs, and a repair of every schema an earlier version of
// 0001-0004 could have left (they were edited after release): revocations with `revision` as its
// primary key and no sequencer (first release) or with a sequencer that waits on log_head;
// audit_entries numbered at insert (first release), by a deferred trigger, or by audit_sequence;
// tokens with a foreign key to agents.
//
// Writers now append to an inbox (one narrow row, one index entry) in their own transaction; the
// sequencer moves committed inbox rows into the log in batches, numbering them in commit order,
// so the log rows are written once and never rewritten.

export async function up(db: Kysely<unknown>): Promise<void> {
  // The first release had a foreign key (key-share locks on the agent row contend under load).
  await sql`alter table tokens drop constraint if exists tokens_agent_id_fkey`.execute(db);

  // revocations: the first release keyed it by revision and had no insertion id.
  await sql`
    do $$ begin
      if not exists (select 1 from information_schema.columns
                     where table_schema = current_schema() and table_name = 'revocations' and column_name = 'id') then
        alter table revocations drop constraint revocations_pkey;
        alter table revocations add column id bigserial;
        alter table revocations add primary key (id);
        alter table revocations add constraint revocations_revision_key unique (revision);
      end if;
    end $$`.execute(db);
  await sql`
    create table revocation_inbox (
      -- Shares revocations' id sequence: a row keeps its id when the sequencer moves it.
      id bigint primary key default nextval('revocations_id_seq'),
      token_id text,
      agent_id text not null,
      reason text not null,
      revoked_by text not null,
      revoked_at timestamptz not null default now(),
      expires_at timestamptz
    )`.execute(db);
  // Events committed but never numbered (their revoker died first) are numbered by the new sequencer.
  await sql`
    with moved as (delete from revocations where revision is null returning *)
    insert into revocation_inbox (id, token_id, agent_id, reason, revoked_by, revoked_at, expires_at)
    select id, token_id, agent_id, reason, revoked_by, revoked_at, expires_at from moved`.execute(db);
  await sql`alter table revocations alter column revision set not null`.execute(db);
  await sql`drop index if exists revocations_pending_idx`.execute(db);
  // A repeated revoke finds the original event here, rather than the sequencer rewriting every
  // revoked token's row (and its three index entries) to copy the revision onto it.
  await sql`create index revocations_token_idx on revocations (token_id) where token_id is not null`.execute(db);
  await sql`drop function if exists revocations_sequence()`.execute(db);

  // audit_entries: the first release had no insertion id and no leaf halves; the second numbered
  // entries with a deferred trigger; the third with audit_sequence and a pending index.
  await sql`drop trigger if exists audit_entries_sequence on audit_entries`.execute(db);
  await sql`drop function if exists audit_entries_sequence()`.execute(db);
  await sql`drop function if exists audit_sequence(integer)`.execute(db);
  await sql`alter table audit_entries add column if not exists id bigserial`.execute(db);
  await sql`
    create table audit_inbox (
      id bigint primary key default nextval('audit_entries_id_seq'),
      kind text not null,
      agent_id text,
      token_id text,
      actor text not null,
      reason text not null default '',
      details jsonb not null default '{}',
      -- The canonical bytes around seq and time (src/audit/encoding.ts); the sequencer fills those in.
      leaf_prefix bytea not null,
      leaf_suffix bytea not null
    )`.execute(db);
  await sql`
    do $$ begin
      if exists (select 1 from information_schema.columns
                 where table_schema = current_schema() and table_name = 'audit_entries' and column_name = 'leaf_prefix') then
        with moved as (delete from audit_entries where seq is null returning *)
        insert into audit_inbox (id, kind, agent_id, token_id, actor, reason, details, leaf_prefix, leaf_suffix)
        select id, kind, agent_id, token_id, actor, reason, details, leaf_prefix, leaf_suffix from moved;
      end if;
    end $$`.execute(db);
  await sql`alter table audit_entries alter column seq set not null, alter column at set not null, alter column leaf_hash set not null`.execute(db);
  await sql`drop index if exists audit_entries_pending_idx`.execute(db);
  // The log's key is seq; nothing reads entries by insertion id, so it needs no index (one index
  // entry fewer per entry). The first release already had seq as its primary key.
  await sql`
    do $$ begin
      if exists (select 1 from pg_constraint where conname = 'audit_entries_pkey' and conrelid = 'audit_entries'::regclass
                 and pg_get_constraintdef(oid) = 'PRIMARY KEY (id)') then
        alter table audit_entries drop constraint audit_entries_pkey, drop constraint audit_entries_seq_key,
          add primary key (seq);
      end if;
    end $$`.execute(db);

  // Revocations are numbered in the order their rows were committed: a batch of committed inbox
  // rows at a time, under log_head's row lock (one sequencer at a time; another replica's pass
  // skips rather than queue, and hears this one's NOTIFY). Also returns the revisions of the
  // events the caller waits for, whoever numbered them.
  await sql`
    create or replace function agentid_sequence_revocations(p_max integer, p_waiting bigint[],
      out o_head bigint, out o_numbered integer, out o_busy boolean, out o_ids bigint[], out o_revisions bigint[])
    language plpgsql as $$
    declare
      h bigint;
    begin
      o_numbered := 0;
      o_busy := false;
      if exists (select 1 from revocation_inbox) then
        select l.revision into h from log_head l for update skip locked;
        if not found then
          o_busy := true;
        else
          with moved as (
            delete from revocation_inbox where id in (select i.id from revocation_inbox i order by i.id limit p_max)
            returning *),
          numbered as (
            select m.*, h + row_number() over (order by m.id) as rev from moved m),
          ins as (
            insert into revocations (id, revision, token_id, agent_id, reason, revoked_by, revoked_at, expires_at)
            select n.id, n.rev, n.token_id, n.agent_id, n.reason, n.revoked_by, n.revoked_at, n.expires_at from numbered n
            returning revocations.revision, revocations.token_id, revocations.agent_id),
          a as (
            update agents set revoked_revision = ins.revision from ins
            where ins.token_id is null and agents.id = ins.agent_id)
          select count(*) into o_numbered from ins;
          if o_numbered > 0 then
            h := h + o_numbered;
            update log_head set revision = h;
            perform pg_notify('agentid_revocations', h::text);
          end if;
          o_head := h;
        end if;
      end if;
      if o_head is null then
        select l.revision into o_head from log_head l;
      end if;
      if cardinality(p_waiting) > 0 then
        select array_agg(r.id), array_agg(r.revision) into o_ids, o_revisions from revocations r where r.id = any(p_waiting);
      end if;
    end
    $$`.execute(db);

  // The transparency log, the same way: seq is the RFC 6962 leaf index; time and leaf hash are
  // fixed when an entry is numbered.
  await sql`
    create or replace function agentid_sequence_audit(p_max integer,
      out o_head bigint, out o_numbered integer, out o_busy boolean)
    language plpgsql as $$
    declare
      s bigint;
      t timestamptz;
    begin
      o_numbered := 0;
      o_busy := false;
      if exists (select 1 from audit_inbox) then
        select h.size into s from audit_head h for update skip locked;
        if not found then
          o_busy := true;
        else
          t := date_trunc('milliseconds', clock_timestamp());
          with moved as (
            delete from audit_inbox where id in (select i.id from audit_inbox i order by i.id limit p_max)
            returning *),
          numbered as (
            select m.*, s + row_number() over (order by m.id) - 1 as n from moved m)
          insert into audit_entries (id, seq, at, kind, agent_id, token_id, actor, reason, details, leaf_hash)
          select n.id, n.n, t, n.kind, n.agent_id, n.token_id, n.actor, n.reason, n.details,
                 sha256(n.leaf_prefix
                   || convert_to(n.n::text || ',"time":"' || to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'UTF8')
                   || n.leaf_suffix)
          from numbered n;
          get diagnostics o_numbered = row_count;
          if o_numbered > 0 then
            s := s + o_numbered;
            update audit_head set size = s;
            perform pg_notify('agentid_audit', s::text);
          end if;
          o_head := s;
        end if;
      end if;
      if o_head is null then
        select h.size into o_head from audit_head h;
      end if;
    end
    $$`.execute(db);

  // Issuance and the kill switch exclude each other per agent: Issue holds a shared lock on the
  // agent until it commits, a kill takes it exclusively first. A kill therefore counts every
  // token issued before it, and an issuance that waited for a kill sees the agent REVOKED (this
  // volatile function reads with a fresh snapshot, taken after the lock). Advisory locks, not
  // row locks: many concurrent issuers for one agent would otherwise share its row lock through
  // multixacts.
  await sql`
    create or replace function agentid_issue_gate(p_agent text) returns boolean language plpgsql volatile as $$
    begin
      perform pg_advisory_xact_lock_shared(1634168436, hashtext(p_agent));
      return exists (select 1 from agents where id = p_agent and status = 'ACTIVE');
    end
    $$`.execute(db);

  // Revoke in one round trip. The audit entry's canonical bytes come from the app as templates
  // with the values only the database knows left as control characters, which canonical JSON
  // never contains raw: chr(1) the agent id and chr(2) the token id of a token found by its hash
  // or id (JSON strings; ids are plain ASCII), chr(3) the count of tokens a kill revoked.
  await sql`
    create or replace function agentid_revoke_agent(p_agent text, p_reason text, p_by text,
      p_prefix text, p_suffix text, p_details text,
      out o_outcome text, out o_event bigint, out o_revision bigint, out o_tokens bigint)
    language plpgsql as $$
    declare
      st text;
      rev bigint;
      v_at timestamptz;
    begin
      o_tokens := 0;
      perform pg_advisory_xact_lock(1634168436, hashtext(p_agent));
      select a.status, a.revoked_revision into st, rev from agents a where a.id = p_agent for update;
      if not found then
        o_outcome := 'not_found';
        return;
      end if;
      if st = 'REVOKED' then
        o_outcome := 'repeat';
        o_revision := rev;
        if rev is null then
          select i.id into o_event from revocation_inbox i where i.agent_id = p_agent and i.token_id is null;
          -- Numbered in between: the sequencer set the revision with the move.
          if o_event is null then
            select a.revoked_revision into o_revision from agents a where a.id = p_agent;
          end if;
        end if;
        return;
      end if;
      select count(*) into o_tokens from tokens t
      where t.agent_id = p_agent and t.revoked_at is null and t.expires_at > now();
      insert into revocation_inbox (token_id, agent_id, reason, revoked_by, expires_at)
      values (null, p_agent, p_reason, p_by, null)
      returning id, revoked_at into o_event, v_at;
      update agents set status = 'REVOKED', revoked_at = v_at, revoked_reason = p_reason, revoked_by = p_by where id = p_agent;
      insert into audit_inbox (kind, agent_id, token_id, actor, reason, details, leaf_prefix, leaf_suffix)
      values ('agent.revoked', p_agent, null, p_by, p_reason,
              replace(p_details, chr(3), o_tokens::text)::jsonb,
              '\\x00'::bytea || convert_to(replace(p_prefix, chr(3), o_tokens::text), 'UTF8'),
              convert_to(p_suffix, 'UTF8'));
      o_outcome := 'revoked';
    end
    $$`.execute(db);

  await sql`
    create or replace function agentid_revoke_token(p_hash bytea, p_token text, p_reason text, p_by text,
      p_prefix text, p_suffix text, p_details text,
      out o_outcome text, out o_event bigint, out o_revision bigint, out o_tokens bigint)
    language plpgsql as $$
    declare
      tid text;
      aid text;
      exp timestamptz;
      done boolean;
      rev bigint;
      st text;
      arev bigint;
      v_at timestamptz;
    begin
      o_tokens := 0;
      if p_hash is not null then
        select t.id, t.agent_id, t.expires_at, t.revoked_at is not null, t.revoked_revision
          into tid, aid, exp, done, rev from tokens t where t.token_hash = p_hash for update;
      else
        select t.id, t.agent_id, t.expires_at, t.revoked_at is not null, t.revoked_revision
          into tid, aid, exp, done, rev from tokens t where t.id = p_token for update;
      end if;
      if tid is null then
        o_outcome := 'not_found';
        return;
      end if;
      -- Against a concurrent kill of its agent: one of the two goes first, whole.
      perform pg_advisory_xact_lock_shared(1634168436, hashtext(aid));
      select a.status, a.revoked_revision into st, arev from agents a where a.id = aid;
      if st = 'REVOKED' then
        o_outcome := 'repeat';
        o_revision := arev;
        if arev is null then
          select i.id into o_event from revocation_inbox i where i.agent_id = aid and i.token_id is null;
          if o_event is null then
            select a.revoked_revision into o_revision from agents a where a.id = aid;
          end if;
        end if;
        return;
      end if;
      if done then
        o_outcome := 'repeat';
        select r.revision into o_revision from revocations r where r.token_id = tid;
        if o_revision is null then
          select i.id into o_event from revocation_inbox i where i.token_id = tid;
          if o_event is null then
            -- Numbered in between; or compacted away once the token expired (the floor is at or
            -- above it); or revoked by a version that kept the revision on the token.
            select r.revision into o_revision from revocations r where r.token_id = tid;
            if o_revision is null then
              select coalesce(rev, c.revision) into o_revision from feed_compaction c;
            end if;
          end if;
        end if;
        return;
      end if;
      insert into revocation_inbox (token_id, agent_id, reason, revoked_by, expires_at)
      values (tid, aid, p_reason, p_by, exp)
      returning id, revoked_at into o_event, v_at;
      update tokens set revoked_at = v_at where id = tid;
      insert into audit_inbox (kind, agent_id, token_id, actor, reason, details, leaf_prefix, leaf_suffix)
      values ('token.revoked', aid, tid, p_by, p_reason, p_details::jsonb,
              '\\x00'::bytea || convert_to(replace(p_prefix, chr(1), to_json(aid)::text), 'UTF8'),
              convert_to(replace(p_suffix, chr(2), to_json(tid)::text), 'UTF8'));
      o_outcome := 'revoked';
      o_tokens := 1;
    end
    $$`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error("0005-sequenced-logs repairs schemas in place and cannot be undone");
}
