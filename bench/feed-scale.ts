// The revocation feed at scale (issue 6 items 4, 5, 7, 8). Run: `npx tsx bench/feed-scale.ts`
// (quick) or `--full`. One embedded PostgreSQL, one `agentid serve`; every watcher, baseline server
// and load generator is its own process. Prints a markdown table and writes
// bench/results/feed-scale.json. Every figure is set beside a baseline measured in the same run.
//
// Figures:
//  4a. Revocation latency, N = 1 / 1,000 / 10,000 watch streams on one server: from the Revoke call
//      being sent (wall clock in the revoking process; from its return is printed beside it) to the event's arrival at each watcher (wall
//      clock in the watcher process; same host, performance.timeOrigin + now()). p50/p99 are pooled
//      over every (event, stream) arrival. Events are revoked one at a time, each after the last
//      one reached every stream. (From its return, negative values mean the event overtook the Revoke response.)
//      Baseline: a raw PostgreSQL LISTEN/NOTIFY round trip (pg_notify in its own committed
//      statement, until the listener's notification). Target: 1 watcher p99 <= 3x that; 1,000
//      and 10,000 streams p99 < 100 ms.
//  4b. Fan-out time at 10,000 streams: per event, last arrival minus first arrival across all
//      streams (p50 over events). Baseline: a bare node:http2 server writing one pre-encoded frame
//      (same message shape) to 10,000 idle streams, measured the same way by the same watcher
//      client. Target <= 2x.
//  5.  Memory per watch stream: server RSS (VmRSS) growth / streams, from before opening 10,000
//      idle streams to after they are all open plus a settle. Baseline: the bare node:http2 server
//      with the same streams. Target <= 2x.
//  7.  Revocation throughput with 1,000 watchers: successful Revokes per second from a closed loop
//      (separate process, pre-encoded requests on distinct tokens), and every watcher must get
//      every revision, gap-free (checked per stream). Target 2,000/s. Context: a plain single-row
//      INSERT commit rate at the same concurrency (revokes serialize on log_head's row lock until
//      commit, so expect roughly one revoke per WAL flush).
//  8.  Isolation: Introspect p99 (gRPC, closed loop, separate process) while revocations fan out to
//      10,000 streams (one every 50 ms), against Introspect p99 with no watchers. Target <= 2x.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { generateKeyPairSync } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { IntrospectRequestSchema, RevokeRequestSchema, TokenService } from "../gen/agentid/v1/token_pb.js";
import { WatchRevocationsRequestSchema } from "../gen/agentid/v1/revocation_pb.js";
import pg from "pg";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import type { Summary } from "./load/stats.js";
import { root, runTs, startAgentid } from "./lib/procs.js";
import { startOwnPostgres } from "./lib/cluster.js";
import { Ctl, rss, wall } from "./lib/ctl.js";

const full = process.argv.includes("--full");
const events = full ? 100 : 30; // latency samples per watcher count
const warm = 5;
const big = 10_000;
const tputMs = full ? 8_000 : 2_000;
const tputTokens = full ? 30_000 : 8_000;
const isoMs = full ? 8_000 : 2_000;
const concurrency = 32;

interface Row { figure: string; value: string; baseline: string; ratio: string; target: string; met: string }
const rows: Row[] = [];
const raw: Record<string, unknown> = {};
const ms = (x: number) => `${x.toFixed(2)} ms`;
function row(figure: string, value: string, baseline: string, ratio: number | undefined, target: string, met: boolean | undefined) {
  rows.push({ figure, value, baseline, ratio: ratio === undefined ? "" : `${ratio.toFixed(2)}x`, target, met: met === undefined ? "" : met ? "met" : "MISSED" });
  console.error(`[feed-scale] ${figure}: ${value} vs ${baseline}`);
}
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
const log = (s: string) => console.error(`[feed-scale ${new Date().toISOString().slice(11, 19)}] ${s}`);

const pgs = await startOwnPostgres();
const adminKey = newSecret(API_KEY_PREFIX);
const server = await startAgentid({
  DATABASE_URL: pgs.url,
  AGENTID_ADMIN_KEY: adminKey,
  AGENTID_DB_POOL_SIZE: "20",
  AGENTID_MAX_WATCHERS: "20000",
  AGENTID_MAX_WATCHERS_PER_CONNECTION: "20000",
  AGENTID_MAX_WATCHERS_PER_KEY: "20000",
  AGENTID_WATCH_QUEUE_LIMIT: "10000",
  LOG_LEVEL: "warn",
});
const helpers: Ctl[] = [];
const helper = (file: string) => {
  const c = new Ctl(file);
  helpers.push(c);
  return c;
};
try {
  const auth: Interceptor = (next) => (req) => (req.header.set("authorization", `Bearer ${adminKey}`), next(req));
  const transport = createGrpcTransport({ baseUrl: `http://${server.grpcAddress}`, interceptors: [auth] });
  const agents = createClient(AgentService, transport);
  const tokens = createClient(TokenService, transport);
  const pub = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32);
  const { agent } = await agents.registerAgent({ name: "feed-scale", publicKey: new Uint8Array(pub), allowedScopes: ["read"], allowedAudiences: ["bench"] });
  const agentId = agent!.agentId;
  async function issue(n: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i += 200) {
      const b = await Promise.all(
        Array.from({ length: Math.min(200, n - i) }, () => tokens.issue({ agentId, scopes: ["read"], audiences: ["bench"], ttl: durationFromMs(3_600_000) })),
      );
      out.push(...b.map((t) => `${t.tokenId}\n${t.token}`));
    }
    return out;
  }
  log("issuing tokens");
  const latencyTokens = (await issue(3 * (events + warm) + 1 + Math.ceil(isoMs / 50) + 50)).map((s) => s.split("\n")[0]!);
  const introTokens = (await issue(1000)).map((s) => s.split("\n")[1]!);
  const revokeTokens = (await issue(tputTokens)).map((s) => s.split("\n")[0]!);
  let nextToken = 0;
  /** Wall clock when the last Revoke call was sent (the latency figures' reference point). */
  let lastSent = 0;
  const revokeOne = async () => {
    lastSent = wall();
    const r = await tokens.revoke({ target: { case: "tokenId", value: latencyTokens[nextToken++]! }, reason: "bench" });
    return Number(r.revision);
  };
  let head = await revokeOne();

  // Baseline for 4a: raw LISTEN/NOTIFY round trip.
  log("LISTEN/NOTIFY baseline");
  const notify: number[] = [];
  {
    const listener = new pg.Client({ connectionString: pgs.url });
    const notifier = new pg.Client({ connectionString: pgs.url });
    await listener.connect();
    await notifier.connect();
    await listener.query("listen bench_rtt");
    let resolve: () => void = () => {};
    listener.on("notification", () => resolve());
    for (let i = 0; i < events * 3 + 20; i++) {
      const got = new Promise<void>((r) => (resolve = r));
      const t0 = performance.now();
      await notifier.query("select pg_notify('bench_rtt', $1)", [String(i)]);
      await got;
      if (i >= 20) notify.push(performance.now() - t0);
    }
    await listener.end();
    await notifier.end();
  }
  notify.sort((a, b) => a - b);
  const nq = (p: number) => notify[Math.min(notify.length - 1, Math.floor(p * notify.length))]!;
  raw.notify = { p50: nq(0.5), p99: nq(0.99), samples: notify.length };

  // Baseline for 8: Introspect with no watchers.
  const introBodies = introTokens.map((token) =>
    Buffer.from(toBinary(IntrospectRequestSchema, create(IntrospectRequestSchema, { token, requiredScope: "read" }))).toString("base64"),
  );
  const introLoad = { concurrency: 8, channels: 2, warmupMs: 500, durationMs: isoMs, address: server.grpcAddress, path: "/agentid.v1.TokenService/Introspect", requests: introBodies, authorization: `Bearer ${adminKey}` };
  log("Introspect, no watchers");
  const introIdle = await runTs<Summary>("load/grpc-unary.ts", introLoad);
  raw.introspectNoWatchers = introIdle;

  const watchBody = (after: number) => Buffer.from(toBinary(WatchRevocationsRequestSchema, create(WatchRevocationsRequestSchema, { afterRevision: BigInt(after) }))).toString("base64");
  const watchPath = "/agentid.v1.RevocationService/WatchRevocations";

  /** Opens n streams in a new watcher process; resolves once every stream got its first message. */
  async function watchers(n: number, url: string, path: string, after: number, record = true) {
    const w = helper("bench/load/watch-streams.ts");
    await w.ready;
    const done = new Map<number, number>();
    w.on((e) => done.set(e.done, e.at));
    const opened = await w.send({ cmd: "open", url, n, perSession: Math.min(100, n), path, headers: { authorization: `Bearer ${adminKey}` }, body: watchBody(after), after, record });
    if (opened.ready !== n) throw new Error(`only ${opened.ready}/${n} streams opened: ${JSON.stringify(opened)}`);
    const waitDone = async (rev: number, timeoutMs = 15_000) => {
      const until = Date.now() + timeoutMs;
      while (!done.has(rev)) {
        if (Date.now() > until) throw new Error(`event ${rev} did not reach all ${n} streams`);
        await sleep(1);
      }
    };
    return { w, waitDone };
  }

  // 4a + 4b: latency at 1, 1,000 and 10,000 streams.
  const grpcUrl = `http://${server.grpcAddress}`;
  const latency: Record<number, any> = {};
  let big10k: Awaited<ReturnType<typeof watchers>> | undefined;
  let serverRss = { before: 0, after: 0 };
  for (const n of [1, 1000, big]) {
    log(`latency with ${n} streams`);
    if (n === big) {
      await sleep(1000);
      serverRss.before = rss(server.proc.pid!);
    }
    const ws = await watchers(n, grpcUrl, watchPath, head);
    if (n === big) {
      await sleep(2000);
      serverRss.after = rss(server.proc.pid!);
      big10k = ws;
    }
    const sent: Record<number, number> = {};
    const returned: Record<number, number> = {};
    for (let i = 0; i < events + warm; i++) {
      const rev = await revokeOne();
      const t1 = wall();
      head = rev;
      if (i >= warm) {
        sent[rev] = lastSent;
        returned[rev] = t1;
      }
      await ws.waitDone(rev);
      await sleep(10);
    }
    // From the Revoke call being sent (the figure); from its return (for comparison: Revoke now
    // waits for its revision, so the event often arrives before the answer and this goes negative).
    latency[n] = await ws.w.send({ cmd: "report", sent });
    latency[n].fromReturn = await ws.w.send({ cmd: "report", sent: returned });
    if (latency[n].gaps) throw new Error(`gaps at ${n} streams: ${JSON.stringify(latency[n])}`);
    if (n !== big) await ws.w.kill();
  }
  raw.latency = latency;

  // 8: Introspect while events fan out to the 10,000 streams.
  log("Introspect during fan-out to 10,000 streams");
  let fanning = true;
  let fanned = 0;
  const fanLoop = (async () => {
    while (fanning) {
      head = await revokeOne();
      fanned++;
      await sleep(50);
    }
  })();
  const introBusy = await runTs<Summary>("load/grpc-unary.ts", introLoad);
  fanning = false;
  await fanLoop;
  await big10k!.waitDone(head);
  const afterIso = await big10k!.w.send({ cmd: "report", sent: {} });
  raw.introspectDuringFanout = { ...introBusy, eventsFannedOut: fanned, watcherCheck: afterIso };
  await big10k!.w.kill();

  // Baselines for 4b and 5: bare node:http2 server, same watcher client.
  log("bare node:http2 baseline, 10,000 streams");
  const h2 = helper("bench/load/h2-fanout-server.ts");
  const h2Ready = await h2.ready;
  await sleep(500);
  const h2Before = rss(h2Ready.pid);
  const bws = await watchers(big, `http://127.0.0.1:${h2Ready.port}`, "/bench.Fanout/Watch", 0);
  await sleep(2000);
  const h2After = rss(h2Ready.pid);
  const h2Sent: Record<number, number> = {};
  const h2Write: number[] = [];
  for (let i = 0; i < events + warm; i++) {
    const r = await h2.send({ cmd: "broadcast", rev: i + 1 });
    if (i >= warm) {
      h2Sent[i + 1] = r.t0;
      h2Write.push(r.t1 - r.t0);
    }
    await bws.waitDone(i + 1);
    await sleep(10);
  }
  const h2Fan = await bws.w.send({ cmd: "report", sent: h2Sent });
  raw.h2Baseline = { fanout: h2Fan, writeLoopMs: h2Write, rss: { before: h2Before, after: h2After } };
  await bws.w.kill();
  await h2.kill();

  // 7: throughput with 1,000 watchers, zero loss; and with none, to see what the fan-out costs.
  const revokeBodies = revokeTokens.map((id) =>
    Buffer.from(toBinary(RevokeRequestSchema, create(RevokeRequestSchema, { target: { case: "tokenId", value: id }, reason: "bench" }))).toString("base64"),
  );
  const revokeLoad = (requests: string[]) => runTs<Summary>("load/grpc-unary.ts", {
    concurrency, channels: 4, warmupMs: 300, durationMs: tputMs, address: server.grpcAddress,
    path: "/agentid.v1.TokenService/Revoke", requests, authorization: `Bearer ${adminKey}`,
  });
  log("throughput with no watchers");
  const tputIdle = await revokeLoad(revokeBodies.slice(0, revokeBodies.length / 2));
  raw.throughputNoWatchers = tputIdle;
  head = await revokeOne();
  log("throughput with 1,000 watchers");
  const tw = await watchers(1000, grpcUrl, watchPath, head, false);
  const startHead = head;
  const tput = await revokeLoad(revokeBodies.slice(revokeBodies.length / 2));
  head = await revokeOne();
  await tw.waitDone(head, 60_000);
  const tcheck = await tw.w.send({ cmd: "report", sent: {} });
  await tw.w.kill();
  const expected = head - startHead;
  const lost = tcheck.closedEarly > 0 || tcheck.gaps > 0 || tcheck.minEvents !== expected || tcheck.maxEvents !== expected;
  const insert = await runTs<Summary>("load/pg-insert.ts", { concurrency, warmupMs: 300, durationMs: tputMs, databaseUrl: pgs.url });
  raw.throughput = { revoke: tput, watcherCheck: tcheck, expectedPerStream: expected, pgInsert: insert };
  if (Math.max(tput.count, tputIdle.count) + 1000 > revokeTokens.length / 2) console.error("warning: the throughput run may have run out of distinct tokens");

  // The table.
  const b99 = nq(0.99);
  const b50 = nq(0.5);
  const notifyB = (p: "p50" | "p99") => `${ms(p === "p50" ? b50 : b99)} (raw LISTEN/NOTIFY ${p})`;
  for (const n of [1, 1000, big]) {
    const l = latency[n];
    const label = `${n.toLocaleString("en-US")} stream${n > 1 ? "s" : ""}`;
    row(`Revoke sent -> event at watcher, p50, ${label}`, ms(l.p50), notifyB("p50"), l.p50 / b50, "info", undefined);
    if (n === 1) row(`Revoke sent -> event at watcher, p99, ${label}`, ms(l.p99), notifyB("p99"), l.p99 / b99, "<= 3x", l.p99 / b99 <= 3);
    else row(`Revoke sent -> event at watcher, p99, ${label}`, ms(l.p99), notifyB("p99"), l.p99 / b99, "< 100 ms", l.p99 < 100);
    row(`(Revoke returned -> event at watcher, p50 / p99, ${label})`, `${ms(l.fromReturn.p50)} / ${ms(l.fromReturn.p99)}`, "", undefined, "info", undefined);
  }
  const fan = latency[big];
  row("Fan-out time, one event to 10,000 streams (last - first arrival, p50)", ms(fan.spreadP50), `${ms(h2Fan.spreadP50)} (bare node:http2, pre-encoded frame)`, fan.spreadP50 / h2Fan.spreadP50, "<= 2x", fan.spreadP50 / h2Fan.spreadP50 <= 2);
  const perStream = (serverRss.after - serverRss.before) / big;
  const h2PerStream = (h2After - h2Before) / big;
  row("Memory per idle watch stream (RSS growth / 10,000)", `${(perStream / 1024).toFixed(1)} KiB`, `${(h2PerStream / 1024).toFixed(1)} KiB (bare node:http2)`, perStream / h2PerStream, "<= 2x", perStream / h2PerStream <= 2);
  row("Introspect p99 during fan-out to 10,000 streams", ms(introBusy.p99us / 1000), `${ms(introIdle.p99us / 1000)} (no watchers)`, introBusy.p99us / introIdle.p99us, "<= 2x", introBusy.p99us / introIdle.p99us <= 2);
  row(
    `Revocations/s with 1,000 watchers (${lost ? "EVENTS LOST" : "0 lost, gap-free"})`,
    `${Math.round(tput.perSecond).toLocaleString("en-US")} /s`,
    `${Math.round(insert.perSecond).toLocaleString("en-US")} /s (single-row INSERT commits, concurrency ${concurrency})`,
    tput.perSecond / insert.perSecond,
    ">= 2,000/s, 0 lost",
    tput.perSecond >= 2000 && !lost,
  );
  row("Revocations/s with no watchers (context)", `${Math.round(tputIdle.perSecond).toLocaleString("en-US")} /s`, `${Math.round(insert.perSecond).toLocaleString("en-US")} /s (single-row INSERT commits)`, tputIdle.perSecond / insert.perSecond, "info", undefined);
  raw.rss = { agentid: serverRss, h2: { before: h2Before, after: h2After } };
  for (const [name, s] of [["introIdle", introIdle], ["introBusy", introBusy], ["revoke", tput], ["revokeNoWatchers", tputIdle], ["insert", insert]] as const) {
    if (s.errors) console.error(`warning: ${name} had ${s.errors} errors, first: ${s.firstError}`);
  }
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const lines = [
    `agentid feed at scale (${full ? "full" : "quick"}: ${events} events per watcher count) on ${machine}`,
    "",
    "| figure | value | baseline | ratio | target | |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows.map((r) => `| ${r.figure} | ${r.value} | ${r.baseline} | ${r.ratio} | ${r.target} | ${r.met} |`),
    "",
    `Fan-out at 10,000: Revoke sent -> last stream p50 ${ms(fan.lastP50)}, p99 ${ms(fan.lastP99)}; bare http2 write start -> last stream p50 ${ms(h2Fan.lastP50)}.`,
  ];
  console.log(lines.join("\n"));
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "feed-scale.json"), JSON.stringify({ at: new Date().toISOString(), machine, mode: full ? "full" : "quick", rows, raw }, null, 2) + "\n");
} finally {
  for (const h of helpers) await h.kill().catch(() => {});
  server.proc.kill("SIGTERM");
  await new Promise((r) => server.proc.once("exit", r));
  await pgs.destroy();
}
process.exit(0);
