import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // agentid_sequence_revocations (0005), also returning the rows it numbered, with the audiences
  // the feed filters on (a token event: its token's; an agent event: every audience any of the
  // agent's tokens was issued for): the replica that numbered them hands them to its feed without
  // reading them again. Columns as arrays, in revision order, so that the driver parses each value
  // as it parses a table read. 0005's function stays for replicas not yet upgraded.
  await sql`
    create function agentid_number_revocations(p_max integer, p_waiting bigint[],
      out o_head bigint, out o_numbered integer, out o_busy boolean, out o_ids bigint[], out o_revisions bigint[],
      out o_rev bigint[], out o_token_id text[], out o_agent_id text[], out o_reason text[], out o_revoked_by text[],
      out o_revoked_at timestamptz[], out o_expires_at timestamptz[], out o_audiences jsonb)
    language plpgsql as $$
    declare
      h bigint;
    begin
      o_numbered := 0;
      o_busy := false;
      if exists (select 1 from revocation_inbox) then
        -- Rows are numbered only once committed (a pass sees committed inbox rows only), in the
        -- order of their inbox ids, above the head: every new number is above every number
        -- already visible, so a reader that has seen revision n never misses a later one below n.
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
            returning *),
          a as (
            update agents set revoked_revision = ins.revision from ins
            where ins.token_id is null and agents.id = ins.agent_id)
          select count(*), array_agg(ins.revision order by ins.revision), array_agg(ins.token_id order by ins.revision),
                 array_agg(ins.agent_id order by ins.revision), array_agg(ins.reason order by ins.revision),
                 array_agg(ins.revoked_by order by ins.revision), array_agg(ins.revoked_at order by ins.revision),
                 array_agg(ins.expires_at order by ins.revision),
                 jsonb_agg(case when ins.token_id is not null
                   then coalesce((select to_jsonb(t.audiences) from tokens t where t.id = ins.token_id), '[]'::jsonb)
                   else (select coalesce(jsonb_agg(distinct x), '[]'::jsonb) from tokens t, unnest(t.audiences) x where t.agent_id = ins.agent_id)
                 end order by ins.revision)
            into o_numbered, o_rev, o_token_id, o_agent_id, o_reason, o_revoked_by, o_revoked_at, o_expires_at, o_audiences
            from ins;
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
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function agentid_number_revocations(integer, bigint[])`.execute(db);
}
