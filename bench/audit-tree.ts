// The transparency log's memory and start time do not grow with the log: a replica keeps O(log n)
// hashes, reads its tree from PostgreSQL (table audit_tree) and serves proofs from stored rows.
// Measured in one run at BENCH_ENTRIES entries (default 1,000,000) against BENCH_SMALL (1,000):
// idle replica RSS, start time, and inclusion and consistency proof latency over gRPC.
//
//   npx tsx bench/audit-tree.ts
//
// Entries are inserted in bulk with SQL (already numbered, with their leaf hashes); the stored
// tree is then built once, as a server upgraded onto an existing log does at its first start.
import { generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import pino from "pino";
import { sql } from "kysely";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { startEmbeddedPostgres } from "../src/store/embedded.js";
import { openDatabase } from "../src/store/open.js";
import { AuditLog } from "../src/audit/log.js";
import { Sequencer } from "../src/store/sequencer.js";
import { auditLogSequence } from "../src/store/audit.js";
import { CLUSTER_ADMIN_KEY, freePort, startReplica } from "./lib/cluster.js";
import { bearer } from "./lib/clients.js";

const BIG = Number(process.env.BENCH_ENTRIES ?? 1_000_000);
const SMALL = Number(process.env.BENCH_SMALL ?? 1_000);
const PROOFS = Number(process.env.BENCH_PROOFS ?? 300);
const IDLE_MS = 3000;

interface Figures {
  entries: number;
  buildMs: number;
  startMs: number;
  rssMb: number;
  inclusionMs: number;
  consistencyMs: number;
}

const builds = new Map<string, number>();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Entries 0..n-1, numbered, with the leaf hashes the sequencer would have stored. */
async function fill(url: string, n: number): Promise<void> {
  const { db } = await openDatabase(url, 2);
  try {
    for (let from = 0; from < n; from += 100_000) {
      const to = Math.min(n, from + 100_000) - 1;
      await sql`
        insert into audit_entries (seq, at, kind, agent_id, token_id, actor, reason, details, leaf_hash)
        select g, timestamptz '2026-01-01T00:00:00Z', 'token.issued', 'agt_bench' || g, 'tok_bench' || g, 'bench', '', '{}'::jsonb,
          sha256('\\x00'::bytea || convert_to('{"actor":"bench","agent_id":"agt_bench' || g || '","details":{},"kind":"token.issued","reason":"","seq":' || g
            || ',"time":"2026-01-01T00:00:00.000Z","token_id":"tok_bench' || g || '"}', 'UTF8'))
        from generate_series(${from}::bigint, ${to}::bigint) g`.execute(db);
    }
    await sql`update audit_head set size = ${n}`.execute(db);
  } finally {
    await db.destroy();
  }
}

/** The first start after an upgrade: the stored tree is built from the entries, once. */
async function build(url: string, pem: string, dir: string): Promise<number> {
  const { db } = await openDatabase(url, 4);
  const logger = pino({ level: "silent" });
  const sequencer = new Sequencer({ db, databaseUrl: "", logger, logs: [auditLogSequence] });
  await sequencer.start();
  const t0 = performance.now();
  const log = await AuditLog.open({
    db,
    sequencer,
    logger,
    origin: "agentid/audit",
    signingKey: pem,
    keyFile: join(dir, "unused-key.pem"),
    recordFile: join(dir, "audit-checkpoint"),
    checkpointIntervalMs: 3_600_000,
  });
  const ms = performance.now() - t0;
  await log.close();
  await sequencer.close();
  await db.destroy();
  return ms;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) / 1024;
}

async function timedStart(url: string, pem: string, dir: string): Promise<{ ms: number; replica: Awaited<ReturnType<typeof startReplica>> }> {
  const t0 = performance.now();
  const replica = await startReplica(url, { AGENTID_AUDIT_SIGNING_KEY: pem, AGENTID_DATA_DIR: dir });
  return { ms: performance.now() - t0, replica };
}

async function measure(url: string, entries: number, pem: string, dir: string, startMs: number): Promise<Figures> {
  const buildMs = builds.get(url)!;
  const { replica } = await timedStart(url, pem, dir);
  try {
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const rss = rssMb(replica.process.pid!);
    const audit = createClient(AuditService, createGrpcTransport({ baseUrl: replica.grpcUrl, interceptors: [bearer(CLUSTER_ADMIN_KEY)] }));
    const size = (await audit.getCheckpoint({})).checkpoint!.treeSize;
    const n = Number(size);
    const rand = (k: number) => Math.floor(Math.random() * k);
    const time = async (f: () => Promise<unknown>) => {
      const s = performance.now();
      await f();
      return performance.now() - s;
    };
    for (let i = 0; i < 20; i++) await audit.getInclusionProof({ leafIndex: BigInt(rand(n)), treeSize: size });
    const incl: number[] = [];
    const cons: number[] = [];
    for (let i = 0; i < PROOFS; i++) {
      incl.push(await time(() => audit.getInclusionProof({ leafIndex: BigInt(rand(n)), treeSize: size })));
      cons.push(await time(() => audit.getConsistencyProof({ firstTreeSize: BigInt(1 + rand(n - 1)), secondTreeSize: size })));
    }
    return { entries, buildMs, startMs, rssMb: rss, inclusionMs: median(incl), consistencyMs: median(cons) };
  } finally {
    await replica.kill();
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "agentid-bench-tree-"));
  await chmod(dir, 0o755);
  const server = await startEmbeddedPostgres({ dataDir: join(dir, "pg-data"), port: await freePort() });
  try {
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    const urls: string[] = [];
    for (const name of ["tree_small", "tree_big"]) {
      await admin.query(`create database ${name}`);
      const u = new URL(server.url);
      u.pathname = `/${name}`;
      urls.push(u.toString());
    }
    await admin.end();
    const pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    console.log(`audit tree: ${SMALL} vs ${BIG} entries, ${PROOFS} proofs of each kind per size (median latency over gRPC)`);
    const t0 = performance.now();
    await fill(urls[0]!, SMALL);
    await fill(urls[1]!, BIG);
    console.log(`  bulk insert: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const dirs = [join(dir, "small"), join(dir, "big")];
    for (let i = 0; i < 2; i++) builds.set(urls[i]!, await build(urls[i]!, pem, dirs[i]!));
    // Start times alternate between the sizes, median of 3, so that load on the shared machine
    // falls on both alike.
    const starts: number[][] = [[], []];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) {
        const { ms, replica } = await timedStart(urls[i]!, pem, dirs[i]!);
        starts[i]!.push(ms);
        await replica.kill();
      }
    }
    const small = await measure(urls[0]!, SMALL, pem, dirs[0]!, median(starts[0]!));
    const big = await measure(urls[1]!, BIG, pem, dirs[1]!, median(starts[1]!));
    const row = (label: string, f: (x: Figures) => number, unit: string, digits = 1) =>
      console.log(`  ${label.padEnd(46)} ${f(small).toFixed(digits).padStart(9)} ${f(big).toFixed(digits).padStart(9)} ${unit.padEnd(3)} ratio ${(f(big) / f(small)).toFixed(2)}`);
    console.log(`  ${"".padEnd(46)} ${String(SMALL).padStart(9)} ${String(BIG).padStart(9)}`);
    row("first start after upgrade (builds tree)", (x) => x.buildMs / 1000, "s", 2);
    row("replica start (spawn to serving, median of 3)", (x) => x.startMs / 1000, "s", 2);
    row("idle replica RSS", (x) => x.rssMb, "MB");
    row("inclusion proof (median)", (x) => x.inclusionMs, "ms", 2);
    row("consistency proof (median)", (x) => x.consistencyMs, "ms", 2);
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
