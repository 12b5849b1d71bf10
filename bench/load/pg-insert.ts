// Baseline load (its own process): a plain single-row INSERT into the same PostgreSQL, at the same
// concurrency as the Issue load.
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { closedLoop } from "./stats.js";

const opts = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as { databaseUrl: string; concurrency: number; warmupMs: number; durationMs: number };
const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: opts.concurrency });
await pool.query("create table if not exists bench_insert (id text primary key, payload bytea not null, at timestamptz not null default now())");
const summary = await closedLoop(opts.concurrency, opts.warmupMs, opts.durationMs, async () => {
  await pool.query("insert into bench_insert (id, payload) values ($1, $2)", [randomBytes(16).toString("hex"), randomBytes(32)]);
});
await pool.end();
process.stdout.write(JSON.stringify(summary) + "\n");
process.exit(0);
