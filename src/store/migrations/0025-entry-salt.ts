import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // Each new audit entry commits a random salt in its leaf, so that the leaf hashes every role
  // may read (hash tiles, proofs) cannot confirm a guess of an entry the role may not read. The
  // app writes it into the leaf's first half, just before "seq"; the sequencer keeps it beside
  // the entry, to be shown with it. Entries written before keep '' and their unsalted leaves.
  await sql`alter table audit_entries add column salt text not null default ''`.execute(db);
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
          insert into audit_entries (id, seq, at, kind, agent_id, token_id, actor, reason, details, leaf_hash, salt)
          select n.id, n.n, t, n.kind, n.agent_id, n.token_id, n.actor, n.reason, n.details,
                 sha256(n.leaf_prefix
                   || convert_to(n.n::text || ',"time":"' || to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'UTF8')
                   || n.leaf_suffix),
                 -- A salted first half ends with the 48 bytes '"salt":"<32 hex>","seq":'. A quote
                 -- inside a string value is escaped, so only the key itself can put '"salt":"' there.
                 -- Compared as bytes at a fixed place: a regex over the text costs 10 to 50 times
                 -- the leaf's sha256 per entry (bench/audit-salt.ts).
                 case when length(n.leaf_prefix) > 48
                       and substring(n.leaf_prefix from length(n.leaf_prefix) - 47 for 8) = convert_to('"salt":"', 'UTF8')
                   then convert_from(substring(n.leaf_prefix from length(n.leaf_prefix) - 39 for 32), 'UTF8') else '' end
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
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table audit_entries drop column salt`.execute(db);
}
