// Usage ingestion (ActivityService.ReportUsage's domain path: resolve tokens, count, score each
// agent once, check policies) against a plain multi-row INSERT of the same records into a bare
// table, on the same PostgreSQL in the same run. Also counts the statements one batch of 1,000
// agents takes.
// Run: npx tsx bench/usage-ingest.ts [--full]
import { performance } from "node:perf_hooks";
import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import pino from "pino";
import type { Database } from "../src/store/database.js";
import { migrate } from "../src/store/open.js";
import { ActivityTracker, DEFAULT_SIGNALS, type UsageInput } from "../src/domain/activity.js";
import { newAgentId, newTokenId } from "../src/domain/ids.js";
import { startOwnPostgres } from "./lib/cluster.js";
import { Sequencer } from "../src/store/sequencer.js";
import { revocationLog } from "../src/store/revocations.js";
import { auditLogSequence } from "../src/store/audit.js";

export interface UsageIngestResult {
  recordsPerBatch: number;
  agents: number;
  ingestPerSecond: number;
  /** The baseline: INSERT ... SELECT FROM unnest(one array per column). */
  insertPerSecond: number;
  /** INSERT ... VALUES (...), (...): one parameter per value. */
  valuesPerSecond: number;
  ratio: number;
  /** Statements one batch of recordsPerBatch records (agents agents) took. */
  statementsPerBatch: number;
}

export async function usageIngest(full: boolean): Promise<UsageIngestResult> {
  const durationMs = full ? 10_000 : 3000;
  const agents = 1000;
  const pgs = await startOwnPostgres();
  const pool = new pg.Pool({ connectionString: pgs.url, max: 4 });
  let statements = 0;
  let tracing = false;
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: (e) => {
      if (e.level === "query") statements++;
      if (process.env.TRACE && tracing && e.level === "query") console.error(e.queryDurationMillis.toFixed(1), e.query.sql.replace(/\s+/g, " ").slice(0, 90));
    },
  });
  try {
    await migrate(db);
    // 1,000 agents with a token each, and the two kinds of policy (thresholds nobody reaches).
    const ids = Array.from({ length: agents }, () => ({ agent: newAgentId(), token: newTokenId() }));
    await sql`insert into agents (id, name, public_key, labels, status)
      select id, 'bench', '\\x00'::bytea, '{}'::jsonb, 'ACTIVE' from unnest(${ids.map((i) => i.agent)}::text[]) as id`.execute(db);
    await sql`insert into tokens (id, token_hash, agent_id, scopes, audiences, expires_at)
      select t, sha256(t::bytea), a, '{read}', '{bench}', now() + interval '1 day'
      from unnest(${ids.map((i) => i.token)}::text[], ${ids.map((i) => i.agent)}::text[]) as u(t, a)`.execute(db);
    await sql`insert into policies (name, kind, threshold, window_seconds, created_by) values
      ('scope-abuse', 'scope_violations', 1000000000, 3600, 'bench'), ('low-trust', 'trust_below', 1, null, 'bench')`.execute(db);
    await sql`create table bare_usage (token_id text, audience text, scope text, outcome text, n bigint, first_seen timestamptz, last_seen timestamptz)`.execute(db);

    // Not started: only a policy revocation (none here) would use it.
    const sequencer = new Sequencer({ db, databaseUrl: pgs.url, logger: pino({ level: "silent" }), logs: [revocationLog, auditLogSequence] });
    const tracker = new ActivityTracker(db, pino({ level: "silent" }), sequencer, DEFAULT_SIGNALS);
    // What an SDK sends for a busy agent: a few scopes each, one of them refused for 10% of agents.
    const scopes = ["orders:read", "orders:list", "invoices:read", "customers:read"];
    const batch = (): UsageInput[] => {
      const now = new Date();
      return ids.flatMap((i, k) =>
        scopes.map((scope, j) => ({
          token: { tokenId: i.token },
          audience: "bench",
          scope: k % 10 === 0 && j === 3 ? "admin" : scope,
          operation: "",
          outcome: k % 10 === 0 && j === 3 ? "scope_not_granted" : "allowed",
          count: 1 + ((k + j) % 7),
          firstSeen: now,
          lastSeen: now,
        })),
      );
    };
    const perBatch = agents * scopes.length;
    const reporter = { principal: "key:bench", audiences: ["bench"] };
    const ingest = () => tracker.ingest(reporter, batch(), 0);
    const insert = () => {
      const b = batch();
      return db
        .insertInto("bare_usage" as never)
        .values(
          b.map((r) => ({
            token_id: (r.token as { tokenId: string }).tokenId,
            audience: r.audience,
            scope: r.scope,
            outcome: r.outcome,
            n: r.count,
            first_seen: r.firstSeen,
            last_seen: r.lastSeen,
          })) as never,
        )
        .execute();
    };
    // The same rows as arrays, one parameter per column: the fastest plain INSERT, the stricter baseline.
    const insertUnnest = () => {
      const b = batch();
      return sql`insert into bare_usage select * from unnest(
        ${b.map((r) => (r.token as { tokenId: string }).tokenId)}::text[], ${b.map((r) => r.audience)}::text[], ${b.map((r) => r.scope)}::text[],
        ${b.map((r) => r.outcome)}::text[], ${b.map((r) => r.count)}::bigint[], ${b.map((r) => r.firstSeen)}::timestamptz[], ${b.map((r) => r.lastSeen)}::timestamptz[])`.execute(db);
    };
    // Warm up both (the first ingest writes every agent's first score), then count one batch.
    for (let i = 0; i < 3; i++) {
      await ingest();
      await insert();
    }
    statements = 0;
    tracing = true;
    await ingest();
    await ingest();
    tracing = false;
    const statementsPerBatch = statements / 2;

    const rate = async (f: () => Promise<unknown>, ms: number) => {
      let n = 0;
      const start = performance.now();
      while (performance.now() - start < ms) {
        await f();
        n++;
      }
      return (n * perBatch * 1000) / (performance.now() - start);
    };
    let ingestPerSecond = 0;
    let insertPerSecond = 0;
    let valuesPerSecond = 0;
    // Alternated, so that a noisy neighbour hurts all alike.
    for (let round = 0; round < 3; round++) {
      valuesPerSecond = Math.max(valuesPerSecond, await rate(insert, durationMs / 3));
      insertPerSecond = Math.max(insertPerSecond, await rate(insertUnnest, durationMs / 3));
      ingestPerSecond = Math.max(ingestPerSecond, await rate(ingest, durationMs / 3));
    }
    await tracker.close();
    return { recordsPerBatch: perBatch, agents, ingestPerSecond, insertPerSecond, valuesPerSecond, ratio: ingestPerSecond / insertPerSecond, statementsPerBatch };
  } finally {
    await db.destroy();
    await pgs.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await usageIngest(process.argv.includes("--full"));
  console.log(
    `usage ingest ${Math.round(r.ingestPerSecond).toLocaleString("en-US")} records/s vs plain multi-row INSERT (unnest) ${Math.round(r.insertPerSecond).toLocaleString("en-US")} records/s: ${r.ratio.toFixed(2)}x` +
      ` (INSERT ... VALUES: ${Math.round(r.valuesPerSecond).toLocaleString("en-US")} records/s)\n` +
      `one batch of ${r.recordsPerBatch} records for ${r.agents} agents: ${r.statementsPerBatch} statements`,
  );
  process.exit(0);
}
