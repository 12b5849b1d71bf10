import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kysely, Migrator, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { createTestDatabase } from "./support/harness.js";
import { migrationProvider } from "../src/store/migrations/index.js";
import { migrate } from "../src/store/open.js";
import type { Database } from "../src/store/database.js";

// Migration 0020 repairs data folders made before allowed audiences existed and issuance denied by
// default: each agent keeps what its tokens already carried.

let pool: pg.Pool;
let db: Kysely<Database>;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 2 });
  db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const { error } = await new Migrator({ db, provider: migrationProvider }).migrateTo("0004-auth");
  if (error) throw error;
});
afterAll(() => db?.destroy());

async function agent(id: string, allowedScopes: string[]): Promise<void> {
  await sql`insert into agents (id, name, public_key, status, allowed_scopes) values (${id}, ${id}, ${Buffer.alloc(32, 1)}, 'ACTIVE', ${allowedScopes}::text[])`.execute(db);
}

async function token(id: string, agentId: string, scopes: string[], audiences: string[]): Promise<void> {
  await sql`insert into tokens (id, token_hash, agent_id, scopes, audiences, expires_at)
    values (${id}, ${Buffer.from(id)}, ${agentId}, ${scopes}::text[], ${audiences}::text[], now() + interval '1 hour')`.execute(db);
}

describe("migration 0020", () => {
  it("fills allowed audiences (and, where none were set, allowed scopes) from the tokens each agent was issued", async () => {
    await agent("open", []);
    await token("t1", "open", ["orders:read"], ["orders"]);
    await token("t2", "open", ["orders:write", "orders:read"], ["billing", "orders"]);
    await agent("bounded", ["s"]);
    await token("t3", "bounded", ["s"], ["api"]);
    await agent("unused", []);

    await migrate(db);

    const rows = await sql<{ id: string; allowed_scopes: string[]; allowed_audiences: string[] }>`
      select id, allowed_scopes, allowed_audiences from agents order by id`.execute(db);
    expect(rows.rows).toEqual([
      { id: "bounded", allowed_scopes: ["s"], allowed_audiences: ["api"] },
      { id: "open", allowed_scopes: ["orders:read", "orders:write"], allowed_audiences: ["billing", "orders"] },
      { id: "unused", allowed_scopes: [], allowed_audiences: [] },
    ]);
    const deployment = await sql<{ id: string }>`select id from deployment`.execute(db);
    expect(deployment.rows).toHaveLength(1);
    expect(deployment.rows[0]!.id).toMatch(/^dep_[0-9a-f]{32}$/);
  });
});
