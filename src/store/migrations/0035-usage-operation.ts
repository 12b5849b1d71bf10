import { sql, type Kysely } from "kysely";

// Frozen in time: never import app code here, never edit after release.

export async function up(db: Kysely<unknown>): Promise<void> {
  // What the requests did, as the reporter names it (an MCP server: "tools/call <tool>"), so an
  // agent's trail shows which tools it called. '' when not named: every existing row.
  await sql`alter table usage_counts add column operation text not null default ''`.execute(db);
  await sql`alter table usage_counts drop constraint usage_counts_pkey`.execute(db);
  await sql`alter table usage_counts add primary key (agent_id, bucket, reporter, source, audience, scope, operation, outcome)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // Lines that differ only in their operation become one.
  await sql`
    create temporary table usage_merged on commit drop as
    select agent_id, bucket, reporter, source, audience, scope, outcome, sum(n) as n, sum(logged) as logged,
      min(first_seen) as first_seen, max(last_seen) as last_seen
    from usage_counts group by agent_id, bucket, reporter, source, audience, scope, outcome`.execute(db);
  await sql`delete from usage_counts`.execute(db);
  await sql`alter table usage_counts drop constraint usage_counts_pkey`.execute(db);
  await sql`alter table usage_counts drop column operation`.execute(db);
  await sql`
    insert into usage_counts (agent_id, bucket, reporter, source, audience, scope, outcome, n, logged, first_seen, last_seen)
    select agent_id, bucket, reporter, source, audience, scope, outcome, n, logged, first_seen, last_seen from usage_merged`.execute(db);
  await sql`alter table usage_counts add primary key (agent_id, bucket, reporter, source, audience, scope, outcome)`.execute(db);
}
