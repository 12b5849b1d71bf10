import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // Allowed audiences bind issuance like allowed scopes, and both now deny by default. Agents
  // registered before keep what they were actually issued: an agent with no allowed scopes (which
  // an issuer could give any scope) is allowed the scopes its tokens carried, and every agent the
  // audiences its tokens carried. Anything more takes a new registration.
  await sql`alter table agents add column allowed_audiences text[] not null default '{}'`.execute(db);
  await sql`
    update agents a set
      allowed_audiences = coalesce((select array_agg(distinct x order by x) from tokens t, unnest(t.audiences) x where t.agent_id = a.id), '{}'),
      allowed_scopes = case when cardinality(a.allowed_scopes) > 0 then a.allowed_scopes
        else coalesce((select array_agg(distinct x order by x) from tokens t, unnest(t.scopes) x where t.agent_id = a.id), '{}') end`.execute(db);
  // One row naming this deployment; agents sign it into their proofs, so that a proof made for
  // one deployment is refused by every other.
  await sql`
    create table deployment (
      only_row boolean primary key default true check (only_row),
      id text not null
    )`.execute(db);
  await sql`insert into deployment (id) values ('dep_' || replace(gen_random_uuid()::text, '-', ''))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table deployment`.execute(db);
  await sql`alter table agents drop column allowed_audiences`.execute(db);
}
