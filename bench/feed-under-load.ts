// The feed while revocations pour in (issue 28). Run: `npx tsx bench/feed-under-load.ts` (quick,
// 6,000 revocations) or `--full` (20,000). Part of `npm run bench`.
//
// Two `agentid serve` replicas on one PostgreSQL: the system's (Debian's, with JIT on, as most
// servers users run) when installed, else the embedded one (the output says which). 1,000
// watchers over 20 HTTP/2 connections, half on each replica, in two processes of their own: 10
// probe streams time every event's arrival; the other 990 decode each distinct message once and
// check that they got every revision, in order. A revoker process keeps 64 Revokes in flight
// (alternating replicas) until every token is revoked. The measuring clients give HTTP/2 a large
// window (a real resource server holds one stream in its own process; a CPU-starved client with
// 50 streams on a 64 KB window would set the pace itself).
//
// Figures: revoke sent -> acknowledged, p99 (the baseline: what the write path takes under this
// load); revoke sent -> event at a probe watcher, p50/p99, over every (event, probe) arrival; the
// ratio of the two p99s (target <= 1.5x; fair on any machine, unlike the absolute rows);
// revocations/s (acknowledged, over the revoker's run), and whether any watcher lost or reordered
// an event. Writes bench/results/feed-under-load.json.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { generateKeyPairSync } from "node:crypto";
import pg from "pg";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { root, runTs, startAgentid } from "./lib/procs.js";
import { postmasterPid, startOwnPostgres } from "./lib/cluster.js";
import { Ctl, cpuSeconds, machineCpuSeconds } from "./lib/ctl.js";
import { systemPostgresBin } from "./lib/system-postgres.js";
import { quantile } from "./load/stats.js";

const watchers = 1000;
const probes = 10;
const perSession = 50;
const inFlight = 64;

const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
const log = (s: string) => console.error(`[feed-under-load ${new Date().toISOString().slice(11, 19)}] ${s}`);
const ms = (x: number) => `${x.toFixed(1)} ms`;

export interface FeedUnderLoad {
  postgres: string;
  revocations: number;
  perSecond: number;
  ackP50: number;
  ackP99: number;
  eventP50: number;
  eventP99: number;
  ratioP99: number;
  lost: boolean;
  /** CPU per revocation, in ms: both replicas, PostgreSQL, the watcher processes, the rest (the revoker). */
  cpuMsPerRevocation: { replicas: number; postgres: number; watchers: number; rest: number };
  /** Share of all cores busy during the run. */
  machineBusy: number;
  check: unknown;
}

export async function feedUnderLoad(full: boolean): Promise<FeedUnderLoad> {
  const tokens = full ? 20_000 : 6_000;
  const system = systemPostgresBin();
  const postgres = system ? `system PostgreSQL (${system}, JIT on)` : "embedded PostgreSQL (no JIT: install Debian's postgresql for the figure users see)";
  const before = process.env.AGENTID_TEST_POSTGRES;
  if (system) process.env.AGENTID_TEST_POSTGRES = "system";
  const pgs = await startOwnPostgres().finally(() => {
    if (before === undefined) delete process.env.AGENTID_TEST_POSTGRES;
    else process.env.AGENTID_TEST_POSTGRES = before;
  });
  const adminKey = newSecret(API_KEY_PREFIX);
  const env = { DATABASE_URL: pgs.url, AGENTID_ADMIN_KEY: adminKey, LOG_LEVEL: "warn" };
  // BENCH_PROFILE=dir writes each replica's CPU profile there (node --cpu-prof).
  const profile = process.env.BENCH_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const replicas = [await startAgentid(env, profile), await startAgentid(env, profile)];
  const helpers: Ctl[] = [];
  try {
    const auth: Interceptor = (next) => (req) => (req.header.set("authorization", `Bearer ${adminKey}`), next(req));
    const agents = createClient(AgentService, createGrpcTransport({ baseUrl: `http://${replicas[0]!.grpcAddress}`, interceptors: [auth] }));
    const pub = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32);
    const { agent } = await agents.registerAgent({ name: "load", publicKey: pub, allowedScopes: ["read"], allowedAudiences: ["api"] });
    // Tokens to revoke, made in bulk: their issuance is not what is measured.
    const c = new pg.Client({ connectionString: pgs.url });
    await c.connect();
    await c.query(
      `insert into tokens (id, token_hash, agent_id, scopes, audiences, expires_at)
       select 'tok_' || lpad(g::text, 22, '0'), sha256(('load' || g)::bytea), $1, '{read}', '{api}', now() + interval '1 hour' from generate_series(1, $2::int) g`,
      [agent!.agentId, tokens],
    );
    await c.end();

    log(`${watchers} watchers on 2 replicas (${probes} probes)`);
    const done = new Map<number, number>();
    const open = async (n: number, record: boolean) => {
      const w = new Ctl("bench/load/watch-streams.ts");
      helpers.push(w);
      await w.ready;
      w.on((e) => done.set(e.done, e.at));
      for (const [i, r] of replicas.entries()) {
        const share = Math.floor(n / 2) + (i === 0 ? n % 2 : 0);
        const opened = await w.send({
          cmd: "open", url: `http://${r.grpcAddress}`, n: share, perSession, after: 0, record,
          path: "/agentid.v1.RevocationService/WatchRevocations", headers: { authorization: `Bearer ${adminKey}` },
        });
        if (opened.closedEarly > 0) throw new Error(`watch streams refused: ${JSON.stringify(opened)}`);
      }
      return w;
    };
    const probe = await open(probes, true);
    const bulk = await open(watchers - probes, false);
    await sleep(1000);

    log(`revoking ${tokens.toLocaleString("en-US")} tokens, ${inFlight} Revokes in flight`);
    // Where the CPU goes during the run: each side's CPU seconds over the revocations; the rest of
    // the machine's busy time is the revoker (its start included) and anything else running.
    const pgPid = await postmasterPid(pgs.url);
    const sides = () => ({
      replicas: replicas.reduce((a, x) => a + cpuSeconds(x.proc.pid!), 0),
      postgres: cpuSeconds(pgPid),
      watchers: cpuSeconds(probe.proc.pid!) + cpuSeconds(bulk.proc.pid!),
      machine: machineCpuSeconds(),
      at: performance.now() / 1000,
    });
    const cpu0 = sides();
    const r = await runTs<{ revision: number[]; sent: number[]; acked: number[]; errors: number; firstError: string; seconds: number }>("load/revoker.ts", {
      addresses: replicas.map((x) => x.grpcAddress),
      tokenIds: Array.from({ length: tokens }, (_, i) => `tok_${String(i + 1).padStart(22, "0")}`),
      inFlight,
      authorization: `Bearer ${adminKey}`,
    });
    const cpu1 = sides();
    if (r.errors > 0) log(`warning: ${r.errors} Revokes failed, first: ${r.firstError}`);
    const head = Math.max(...r.revision);
    const deadline = Date.now() + 120_000;
    // Every stream in each process has the last revision (done events are per process).
    while (Date.now() < deadline) {
      const [p, b] = await Promise.all([probe.send({ cmd: "report", sent: {} }), bulk.send({ cmd: "report", sent: {} })]);
      if (p.minLast >= head && b.minLast >= head) break;
      await sleep(200);
    }
    const sent: Record<string, number> = {};
    r.revision.forEach((rev, i) => (sent[rev] = r.sent[i]!));
    const p = await probe.send({ cmd: "report", sent });
    const b = await bulk.send({ cmd: "report", sent: {} });
    const lost = [p, b].some((x) => x.closedEarly > 0 || x.gaps > 0 || x.minEvents !== head || x.maxEvents !== head);
    const ack = r.acked.map((t, i) => t - r.sent[i]!);
    const perRevocation = (seconds: number) => (seconds * 1000) / r.revision.length;
    const result: FeedUnderLoad = {
      postgres,
      revocations: r.revision.length,
      perSecond: r.revision.length / r.seconds,
      ackP50: quantile(ack, 0.5),
      ackP99: quantile(ack, 0.99),
      eventP50: p.p50,
      eventP99: p.p99,
      ratioP99: p.p99 / quantile(ack, 0.99),
      lost,
      cpuMsPerRevocation: {
        replicas: perRevocation(cpu1.replicas - cpu0.replicas),
        postgres: perRevocation(cpu1.postgres - cpu0.postgres),
        watchers: perRevocation(cpu1.watchers - cpu0.watchers),
        rest: perRevocation(cpu1.machine - cpu0.machine - (cpu1.replicas - cpu0.replicas) - (cpu1.postgres - cpu0.postgres) - (cpu1.watchers - cpu0.watchers)),
      },
      machineBusy: (cpu1.machine - cpu0.machine) / (cpu1.at - cpu0.at) / cpus().length,
      check: { head, probes: p, bulk: b },
    };
    return result;
  } finally {
    for (const h of helpers) await h.kill().catch(() => {});
    for (const x of replicas) await x.stop();
    await pgs.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const full = process.argv.includes("--full");
  const f = await feedUnderLoad(full);
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  console.log(
    [
      `The feed under write load (${full ? "full" : "quick"}), ${machine}, on the ${f.postgres}:`,
      `  revocations             ${f.revocations.toLocaleString("en-US")} at ${Math.round(f.perSecond).toLocaleString("en-US")}/s, ${f.lost ? "EVENTS LOST OR REORDERED" : "0 lost or reordered"}`,
      `  revoke sent -> acked    p50 ${ms(f.ackP50)}  p99 ${ms(f.ackP99)}`,
      `  revoke sent -> event    p50 ${ms(f.eventP50)}  p99 ${ms(f.eventP99)}  (${probes} probe streams of ${watchers})`,
      `  event p99 / acked p99   ${f.ratioP99.toFixed(2)}x (target <= 1.5x)`,
      `  CPU per revocation      replicas ${ms(f.cpuMsPerRevocation.replicas)}, PostgreSQL ${ms(f.cpuMsPerRevocation.postgres)}, watchers ${ms(f.cpuMsPerRevocation.watchers)}, revoker and the rest ${ms(f.cpuMsPerRevocation.rest)}; cores busy ${(f.machineBusy * 100).toFixed(0)}%`,
    ].join("\n"),
  );
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "feed-under-load.json"), JSON.stringify({ at: new Date().toISOString(), machine, mode: full ? "full" : "quick", ...f }, null, 2) + "\n");
}
