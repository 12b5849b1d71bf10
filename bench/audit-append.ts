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
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

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
  console.log(`  ${name.padEnd(14)} ${rate.toFixed(0).padStart(7)} /s (${done} in ${secs.toFixed(2)}s)`);
  return rate;
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

    console.log(`Issue throughput, concurrency ${CONCURRENCY}, ${ROUNDS} alternating rounds of ${ROUND_MS} ms each`);
    await measure("warm-up", insert);
    await measure("warm-up", issue);
    const ratios: number[] = [];
    const rates = { issue: [] as number[], insert: [] as number[], tokenOnly: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      const base = await measure("single INSERT", insert);
      const tok = await measure("token only", tokenOnly);
      const logged = await measure("Issue", issue);
      // Everything issued in the round is numbered before the next one starts.
      await sequencer.flush("audit");
      rates.insert.push(base);
      rates.tokenOnly.push(tok);
      rates.issue.push(logged);
      ratios.push(logged / base);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const result = {
      issuePerSecond: median(rates.issue),
      insertPerSecond: median(rates.insert),
      tokenOnlyPerSecond: median(rates.tokenOnly),
      ratio: median(ratios),
    };
    console.log(`Issue / single-row INSERT (median of ${ROUNDS} rounds): ${result.ratio.toFixed(2)}x (target >= 0.6x)`);
    return result;
  } finally {
    await sequencer.close();
    await db.destroy();
    await own?.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await auditAppend();
