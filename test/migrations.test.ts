import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Kysely, Migrator, PostgresDialect, sql, type Migration } from "kysely";
import pg from "pg";
import { createClient } from "@connectrpc/connect";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { createTestDatabase, publicKey, startHarness, type Harness } from "./support/harness.js";
import { StreamRecorder } from "./support/feed.js";
import { entryBytes, leafHash, leafPrefix, leafSuffix } from "../src/audit/encoding.js";
import { hashSecret, newAgentId, newToken, newTokenId } from "../src/domain/ids.js";
import { verifyLog } from "../src/audit/verify.js";
import * as first0001 from "./fixtures/migrations-first/0001-init.js";
import * as first0002 from "./fixtures/migrations-first/0002-feed.js";
import * as first0003 from "./fixtures/migrations-first/0003-audit.js";
import * as first0004 from "./fixtures/migrations-first/0004-auth.js";
import * as trigger0003 from "./fixtures/migrations-trigger/0003-audit.js";

// Released migrations are frozen: a data folder made by any earlier version must keep working, so
// a fix is a new migration, never an edit. Pin each file as released; add a file's hash here when
// it is released (merged into main), and never change one.
const RELEASED: Record<string, string> = {
  "0001-init.ts": "c1771625db6ba55b5258d67f7301567173d2f5a3c57b88c4bbf976869faa5f89",
  "0002-feed.ts": "50fcf86f8514a6317a126af08ca4db789f16bde839e11489c858c9ae48f1259d",
  "0003-audit.ts": "8356abb45d31b450ee7f8ee5f4dcdb20bdaaa6cb3323b89ebd98ad7af2b33111",
  "0004-auth.ts": "4a5c19616758faaffb8d9689bbf772552640651553277c9ab298b1184a8cfe89",
  "0005-sequenced-logs.ts": "d5b55370fe5347dbe5341037c74013f08120786b37a97ed6c65bc0ae4f479098",
  "0010-audit-tree.ts": "0d9a224e3edb90709d7a5c433489769e82ad85922c9b17b398350b44320484ca",
  "0015-usage.ts": "2c9f52367a46e223b9d2c9f72051f4ababe9a06b614bc92abb95fd6bb005761d",
  "0020-agent-audiences.ts": "eff8b8adb20dc79605813ae734d9d7b628bfc3edbab2342f719f7abe22fb1cf2",
  "0025-entry-salt.ts": "d9ba822d12bb9adfc2e690aa285b7980e4a13e0dfdfd083b26a7bc18049515ea",
  "0030-usage-logged.ts": "ab34450b2f921d86c3ca02d9986eef21f7d325b794208c58a507ba835cb4368e",
  "0035-usage-operation.ts": "bd2891314e11aeab70de21bdc1b67c8c6c2c1b4af6638ee6bcf4d4b704c8ef77",
  "0040-numbered-rows.ts": "e30e61f0bb3acfe3c3e84b6afdc97219787cac2924108aab96320f6cabffd3f3",
};

const DIR = join(import.meta.dirname, "..", "src", "store", "migrations");

describe("released migrations", () => {
  it("are byte for byte as released", () => {
    const files = readdirSync(DIR).filter((f) => f !== "index.ts");
    for (const f of files) {
      const hash = createHash("sha256").update(readFileSync(join(DIR, f))).digest("hex");
      expect(RELEASED[f], `${f} has no pinned hash: pin it in test/migrations.test.ts`).toBeDefined();
      expect(hash, `${f} was edited after release: write a new migration instead`).toBe(RELEASED[f]);
    }
    for (const f of Object.keys(RELEASED)) expect(files, `${f} was deleted`).toContain(f);
  });
});

// Schemas that earlier versions of main created, from the migration files as they were then
// (copied from git history into test/fixtures).
const SCHEMAS: Record<string, Record<string, Migration>> = {
  // The first release: revocations keyed by revision, audit entries numbered as inserted, tokens
  // with a foreign key to agents.
  first: { "0001-init": first0001, "0002-feed": first0002, "0003-audit": first0003, "0004-auth": first0004 },
  // Audit entries numbered at commit by a deferred trigger.
  "deferred trigger": { "0001-init": first0001, "0002-feed": first0002, "0003-audit": trigger0003, "0004-auth": first0004 },
};

async function buildOldDatabase(migrations: Record<string, Migration>) {
  const url = await createTestDatabase();
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  const { error } = await new Migrator({ db, provider: { getMigrations: async () => migrations } }).migrateToLatest();
  if (error) throw error;
  return { url, db };
}

/** What an old server would have written: an agent with two tokens, one revoked at revision 1, and two log entries. */
async function seedOldData(db: Kysely<unknown>, numberedAtInsert: boolean) {
  const agentId = newAgentId();
  const liveToken = newToken();
  const liveId = newTokenId();
  const goneId = newTokenId();
  const exp = new Date(Date.now() + 3_600_000);
  await sql`insert into agents (id, name, public_key, status) values (${agentId}, 'old', ${Buffer.from(publicKey())}, 'ACTIVE')`.execute(db);
  await sql`insert into tokens (id, token_hash, agent_id, scopes, audiences, expires_at) values
    (${liveId}, ${hashSecret(liveToken)}, ${agentId}, '{}', '{}', ${exp}),
    (${goneId}, ${hashSecret(newToken())}, ${agentId}, '{}', '{}', ${exp})`.execute(db);
  await sql`update tokens set revoked_at = now(), revoked_revision = 1 where id = ${goneId}`.execute(db);
  await sql`insert into revocations (revision, token_id, agent_id, reason, revoked_by, expires_at) values (1, ${goneId}, ${agentId}, 'old', 'key:old', ${exp})`.execute(db);
  await sql`update log_head set revision = 1`.execute(db);
  const entries = [
    // Written before salts: their leaves have none.
    { kind: "agent.registered", agentId, tokenId: "", actor: "key:old", reason: "", details: {}, salt: "" },
    { kind: "token.issued", agentId, tokenId: liveId, actor: "key:old", reason: "", details: {}, salt: "" },
  ];
  for (const [i, e] of entries.entries()) {
    if (numberedAtInsert) {
      const at = new Date(Math.floor(Date.now() / 1000) * 1000);
      const hash = leafHash(entryBytes({ ...e, seq: BigInt(i), time: at }));
      await sql`insert into audit_entries (seq, at, kind, agent_id, token_id, actor, reason, details, leaf_hash)
        values (${i}, ${at}, ${e.kind}, ${e.agentId}, ${e.tokenId || null}, ${e.actor}, '', '{}', ${hash})`.execute(db);
      await sql`update audit_head set size = size + 1`.execute(db);
    } else {
      // The trigger numbers it at commit.
      await sql`insert into audit_entries (kind, agent_id, token_id, actor, reason, details, leaf_prefix, leaf_suffix)
        values (${e.kind}, ${e.agentId}, ${e.tokenId || null}, ${e.actor}, '', '{}', ${leafPrefix(e)}, ${leafSuffix(e)})`.execute(db);
    }
  }
  return { agentId, liveToken, liveId };
}

describe.each(Object.keys(SCHEMAS))("today's server on a database made by the %s schema", (name) => {
  const open: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const f of open.reverse()) await f();
  });

  it("upgrades it, and Revoke, Issue, the feed and the transparency log work", async () => {
    const { url, db } = await buildOldDatabase(SCHEMAS[name]!);
    const old = await seedOldData(db, name === "first");
    await db.destroy();

    const h: Harness = await startHarness({ databaseUrl: url });
    open.push(() => h.close());
    const rec = new StreamRecorder(h.grpc, 0n);
    open.push(() => rec.stop());

    // The old token still answers, and a new one can be issued.
    expect((await h.grpc.tokens.introspect({ token: old.liveToken })).active).toBe(true);
    const fresh = await h.grpc.tokens.issue({ agentId: old.agentId });
    expect(fresh.tokenId).toMatch(/^tok_/);

    // Revisions continue the old log, and a repeat answers the original revision.
    const r1 = await h.grpc.tokens.revoke({ target: { case: "token", value: old.liveToken }, reason: "upgrade" });
    expect(r1.revision).toBe(2n);
    const again = await h.grpc.tokens.revoke({ target: { case: "tokenId", value: old.liveId }, reason: "again" });
    expect(again.revision).toBe(2n);
    expect(again.tokensRevoked).toBe(0n);
    const kill = await h.grpc.tokens.revoke({ target: { case: "agentId", value: old.agentId }, reason: "upgrade" });
    expect(kill.revision).toBe(3n);
    expect(kill.tokensRevoked).toBe(1n);
    await rec.until((r) => r.revisions.includes(3n));
    expect(rec.revisions).toEqual([1n, 2n, 3n]);

    // The transparency log: the old entries and the new ones, verified from their contents.
    const audit = createClient(AuditService, h.grpcTransport);
    const report = await verifyLog(audit);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    const kinds = (await audit.listEntries({ agentId: old.agentId })).entries.map((e) => e.kind);
    expect(kinds).toEqual(["agent.registered", "token.issued", "token.issued", "token.revoked", "agent.revoked"]);
  }, 60_000);
});
