// Issue throughput with the transparency log against issuance without it, measured in one run.
//
//   npx tsx bench/audit-append.ts            (embedded PostgreSQL in a temp folder)
//   DATABASE_URL=postgres://... npx tsx bench/audit-append.ts
//
// Both sides run at the domain level (no RPC), so the log's cost is not hidden behind transport
// overhead: this is the worst-case ratio. "without log" is what issuance was before the log: the
// single conditional INSERT of the token in its own transaction. "with log" is issueToken, which
// adds the audit entry: one more INSERT, and at commit the sequencing trigger's UPDATE of
// audit_head, whose row lock is held until the commit is durable. That serialises committing
// writers of entries; what the ratio mostly measures is one commit (WAL flush) at a time.
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedPostgres } from "../src/store/embedded.js";
import { openDatabase } from "../src/store/open.js";
import { sql } from "kysely";
import { registerAgent } from "../src/domain/agents.js";
import { issueToken } from "../src/domain/tokens.js";
import { hashSecret, newToken, newTokenId } from "../src/domain/ids.js";
import type { Db } from "../src/store/database.js";

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1000);
const ROUNDS = 3;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function measure(name: string, op: (i: number) => Promise<unknown>): Promise<number> {
  let done = 0;
  const end = Date.now() + ROUND_MS;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = 0; Date.now() < end; i++) {
        await op(w * 1_000_000 + i);
        done++;
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  const rate = done / secs;
  console.log(`  ${name.padEnd(12)} ${rate.toFixed(0).padStart(7)} issues/s (${done} in ${secs.toFixed(2)}s)`);
  return rate;
}

async function main(): Promise<void> {
  let url = process.env.DATABASE_URL ?? "";
  let cleanup = async () => {};
  if (!url) {
    const dir = await mkdtemp(join(tmpdir(), "agentid-bench-"));
    await chmod(dir, 0o755);
    const pg = await startEmbeddedPostgres({ dataDir: dir, port: await freePort() });
    url = pg.url;
    cleanup = async () => {
      await pg.stop();
      await rm(dir, { recursive: true, force: true });
    };
  }
  const { db } = await openDatabase(url, CONCURRENCY + 4);
  try {
    const agents = await Promise.all(
      Array.from({ length: CONCURRENCY }, (_, i) => registerAgent(db, { name: `bench-${i}`, publicKey: randomBytes(32), labels: {}, allowedScopes: ["read"], allowedAudiences: ["api"] }, "bench")),
    );
    const req = (i: number) => ({ agentId: agents[i % agents.length]!.id, scopes: ["read"], audiences: ["api"], ttlMs: 3_600_000 });
    // The same token INSERT as Issue, without its audit entry: one statement, like Issue's.
    const without = (i: number) => {
      const r = req(i);
      const now = new Date();
      return sql`
        insert into tokens (id, token_hash, agent_id, scopes, audiences, issued_at, expires_at)
        select ${newTokenId()}, ${hashSecret(newToken())}, a.id, ${r.scopes}::text[], ${r.audiences}::text[], ${now}, ${new Date(now.getTime() + r.ttlMs)}
        from agents a where a.id = ${r.agentId} and a.status = 'ACTIVE'`.execute(db as Db);
    };
    const withLog = (i: number) => issueToken(db, req(i), "bench");

    console.log(`Issue throughput, concurrency ${CONCURRENCY}, ${ROUNDS} alternating rounds of ${ROUND_MS} ms each`);
    // Both paths warm (JIT, pool connections, table and index pages) before anything counts.
    await measure("warm-up", without);
    await measure("warm-up", withLog);
    const ratios: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const base = await measure("without log", without);
      const logged = await measure("with log", withLog);
      ratios.push(logged / base);
    }
    // The median round: the machine is shared, single rounds swing.
    const ratio = ratios.sort((a, b) => a - b)[Math.floor(ratios.length / 2)]!;
    console.log(`with log / without log (median of ${ROUNDS} rounds): ${ratio.toFixed(2)}`);
  } finally {
    await db.destroy();
    await cleanup();
  }
}

await main();
