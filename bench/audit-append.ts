// Issuance (a token and its transparency-log entry, numbered by the sequencer) against a bare
// single-row INSERT at the same concurrency, measured in one run, in one process, on one pool.
//
//   npx tsx bench/audit-append.ts            (embedded PostgreSQL in a temp folder)
//   DATABASE_URL=postgres://... npx tsx bench/audit-append.ts
//   BENCH_CONCURRENCY=32 BENCH_ROUND_MS=2000 npx tsx bench/audit-append.ts
//
// At the domain level (no RPC), so what is compared is the database work: Issue's one statement
// (token row, inbox row, the agent's issuance gate) plus its share of the sequencer's batches,
// against one row with one index. "token only" (the token INSERT without the log entry) is shown
// for context. Rounds alternate; the median ratio is the figure.
import { randomBytes } from "node:crypto";
import pino from "pino";
import { sql } from "kysely";
import { openDatabase } from "../src/store/open.js";
import { CommitSignals, Sequencer } from "../src/store/sequencer.js";
import { revocationLog } from "../src/store/revocations.js";
import { auditLogSequence } from "../src/store/audit.js";
import { registerAgent } from "../src/domain/agents.js";
import { issueToken } from "../src/domain/tokens.js";
import { hashSecret, newToken, newTokenId } from "../src/domain/ids.js";
import { startOwnPostgres } from "./lib/cluster.js";

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
// Short alternating slices, so that the load other processes put on a shared machine falls on
// every side alike; each side's rate is its operations over its own slices' time.
const SLICE_MS = Number(process.env.BENCH_SLICE_MS ?? 250);
const SLICES = Number(process.env.BENCH_SLICES ?? 16);

/** Runs `op` at CONCURRENCY for one slice; returns operations done and seconds taken. */
async function slice(op: (i: number) => Promise<unknown>): Promise<[number, number]> {
  let done = 0;
  const end = Date.now() + SLICE_MS;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = 0; Date.now() < end; i++) {
        await op(w * 1_000_000 + i);
        done++;
      }
    }),
  );
  return [done, Number(process.hrtime.bigint() - start) / 1e9];
}

/** Alternates slices of each side; returns each side's rate per second. */
async function alternate(sides: Record<string, (i: number) => Promise<unknown>>, slices: number): Promise<Record<string, number>> {
  const totals = Object.fromEntries(Object.keys(sides).map((k) => [k, [0, 0]])) as Record<string, [number, number]>;
  for (let n = 0; n < slices; n++) {
    for (const [name, op] of Object.entries(sides)) {
      const [done, secs] = await slice(op);
      totals[name]![0] += done;
      totals[name]![1] += secs;
    }
  }
  return Object.fromEntries(Object.entries(totals).map(([k, [done, secs]]) => [k, done / secs]));
}

export interface AuditAppendResult {
  issuePerSecond: number;
  insertPerSecond: number;
  tokenOnlyPerSecond: number;
  ratio: number;
}

export async function auditAppend(): Promise<AuditAppendResult> {
  const own = process.env.DATABASE_URL ? undefined : await startOwnPostgres();
  const url = process.env.DATABASE_URL ?? own!.url;
  const signals = new CommitSignals(["audit_inbox", "revocation_inbox"]);
  const { db } = await openDatabase(url, CONCURRENCY + 4, signals);
  const sequencer = new Sequencer({ db, databaseUrl: url, logger: pino({ level: "warn" }), logs: [revocationLog, auditLogSequence] });
  signals.onCommit = (table) => sequencer.wake(table === "audit_inbox" ? "audit" : "revocations");
  await sequencer.start();
  try {
    await sql`create table if not exists bench_insert (id text primary key, payload bytea not null, at timestamptz not null default now())`.execute(db);
    const agents = await Promise.all(
      Array.from({ length: CONCURRENCY }, (_, i) =>
        registerAgent(db, { name: `bench-${i}`, publicKey: randomBytes(32), labels: {}, allowedScopes: [] }, "bench"),
      ),
    );
    const req = (i: number) => ({ agentId: agents[i % agents.length]!.id, scopes: ["read"], audiences: ["api"], ttlMs: 3_600_000, selfIssued: false });
    // The baseline of the target: a plain single-row INSERT (bench/load/pg-insert.ts does the same over RPC runs).
    const insert = () => sql`insert into bench_insert (id, payload) values (${randomBytes(16).toString("hex")}, ${randomBytes(32)})`.execute(db);
    // Issue's token INSERT without its log entry, for context.
    const tokenOnly = (i: number) => {
      const r = req(i);
      const now = new Date();
      return sql`
        insert into tokens (id, token_hash, agent_id, scopes, audiences, issued_at, expires_at)
        select ${newTokenId()}, ${hashSecret(newToken())}, a.id, ${r.scopes}::text[], ${r.audiences}::text[], ${now}, ${new Date(now.getTime() + r.ttlMs)}
        from agents a where a.id = ${r.agentId} and a.status = 'ACTIVE'`.execute(db);
    };
    const issue = (i: number) => issueToken(db, req(i), "bench");

    console.log(`Issue throughput, concurrency ${CONCURRENCY}, ${SLICES} alternating slices of ${SLICE_MS} ms per side`);
    // Warm both paths (JIT, pool connections, table and index pages) before anything counts.
    await alternate({ insert, issue }, 2);
    const r = await alternate({ insert, tokenOnly, issue }, SLICES);
    // Everything issued is numbered (the sequencer ran throughout; its cost is in the figure).
    await sequencer.flush("audit");
    const result = { issuePerSecond: r.issue!, insertPerSecond: r.insert!, tokenOnlyPerSecond: r.tokenOnly!, ratio: r.issue! / r.insert! };
    console.log(`  single INSERT  ${result.insertPerSecond.toFixed(0).padStart(7)} /s`);
    console.log(`  token only     ${result.tokenOnlyPerSecond.toFixed(0).padStart(7)} /s`);
    console.log(`  Issue          ${result.issuePerSecond.toFixed(0).padStart(7)} /s (token, log entry, numbered)`);
    console.log(`Issue / single-row INSERT: ${result.ratio.toFixed(2)}x (target >= 0.6x)`);
    return result;
  } finally {
    await sequencer.close();
    await db.destroy();
    await own?.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await auditAppend();
