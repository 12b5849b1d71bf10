import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kysely, Migrator, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { createTestDatabase } from "./support/harness.js";
import { migrationProvider } from "../src/store/migrations/index.js";
import { migrate } from "../src/store/open.js";
import type { Database } from "../src/store/database.js";

// Migration 0030 records how much of each usage count the log holds: buckets the trail's head had
// passed were summarised whole, later ones not at all. Neither may be logged twice or dropped.

let pool: pg.Pool;
let db: Kysely<Database>;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 2 });
  db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const { error } = await new Migrator({ db, provider: migrationProvider }).migrateTo("0025-entry-salt");
  if (error) throw error;
});
afterAll(() => db?.destroy());

describe("migration 0030", () => {
  it("marks the counts of summarised buckets as logged, and only those", async () => {
    await sql`update usage_trail_head set logged_before = timestamptz '2026-01-01 00:01:00+00'`.execute(db);
    for (const bucket of ["2026-01-01 00:00:00+00", "2026-01-01 00:01:00+00"]) {
      await sql`insert into usage_counts (agent_id, bucket, reporter, source, audience, scope, outcome, n, first_seen, last_seen)
        values ('agt_a', ${bucket}::timestamptz, 'key:k', 'report', 'api', 'read', 'allowed', 7, ${bucket}::timestamptz, ${bucket}::timestamptz)`.execute(db);
    }
    await migrate(db);
    const { rows } = await sql<{ bucket: Date; logged: string }>`select bucket, logged from usage_counts order by bucket`.execute(db);
    expect(rows.map((r) => Number(r.logged))).toEqual([7, 0]);
    // Gateways' counts are a source now.
    await sql`insert into usage_counts (agent_id, bucket, reporter, source, audience, scope, outcome, n, first_seen, last_seen)
      values ('agt_a', now(), 'key:k', 'gateway', '', 'read', 'allowed', 1, now(), now())`.execute(db);
  });
});
