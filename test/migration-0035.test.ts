import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kysely, Migrator, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { createTestDatabase } from "./support/harness.js";
import { migrationProvider } from "../src/store/migrations/index.js";
import type { Database } from "../src/store/database.js";

// Migration 0035 adds what the requests did (the operation) to usage lines: existing lines keep
// their counts under no operation, and going back merges lines that differ only in it.

let pool: pg.Pool;
let db: Kysely<Database>;
const migrator = () => new Migrator({ db, provider: migrationProvider });
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 2 });
  db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const { error } = await migrator().migrateTo("0030-usage-logged");
  if (error) throw error;
});
afterAll(() => db?.destroy());

const line = (operation?: string) =>
  operation === undefined
    ? sql`insert into usage_counts (agent_id, bucket, reporter, source, audience, scope, outcome, n, logged, first_seen, last_seen)
        values ('agt_a', timestamptz '2026-01-01 00:00:00+00', 'key:k', 'report', 'api', 'read', 'allowed', 7, 7, now(), now())`
    : sql`insert into usage_counts (agent_id, bucket, reporter, source, audience, scope, operation, outcome, n, logged, first_seen, last_seen)
        values ('agt_a', timestamptz '2026-01-01 00:00:00+00', 'key:k', 'report', 'api', 'read', ${operation}, 'allowed', 2, 0, now(), now())`;

describe("migration 0035", () => {
  it("keeps every line under no operation, tells operations apart, and merges them going back", async () => {
    await line().execute(db);
    const up = await migrator().migrateTo("0035-usage-operation");
    expect(up.error).toBeUndefined();
    await line("tools/call search").execute(db);
    const { rows } = await sql<{ operation: string; n: string }>`select operation, n from usage_counts order by operation`.execute(db);
    expect(rows.map((r) => [r.operation, Number(r.n)])).toEqual([
      ["", 7],
      ["tools/call search", 2],
    ]);
    const down = await migrator().migrateTo("0030-usage-logged");
    expect(down.error).toBeUndefined();
    const { rows: merged } = await sql<{ n: string; logged: string }>`select n, logged from usage_counts`.execute(db);
    expect(merged.map((r) => [Number(r.n), Number(r.logged)])).toEqual([[9, 7]]);
  });
});
