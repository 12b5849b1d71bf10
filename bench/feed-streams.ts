// How the feed scales with the number of streams on one replica (issue 28): 1,000, 10,000 and
// 50,000 WatchRevocations streams on one `agentid serve`. Run: `npx tsx bench/feed-streams.ts`
// (`--full` for more events; `--streams 1000,10000` to choose the counts). Uses Debian's
// PostgreSQL when installed (AGENTID_TEST_POSTGRES=system), else the embedded one. Prints a
// markdown table and writes bench/results/feed-streams.json.
//
// For each count N, the streams are opened afresh (raw node:http2 sessions of 100 streams, from
// watcher processes of at most 10,000 streams each; every process decodes and timestamps what it
// gets), then revocations are sent one at a time, each after the last reached every stream:
//  - Revoke sent -> event at a watcher, p50 and p99 pooled over every (event, stream) arrival, and
//    the last stream's arrival (p50 over events); the baseline is the same Revoke's own
//    acknowledgement (sent -> acked), measured with no streams open before the first count and
//    again after the last, so the ratio says what the streams add to the kill switch's reach;
//  - Revoke sent -> acknowledged with N streams open (the write path while the feed fans out);
//  - server CPU per event per stream (the replica's CPU time over the events / events / N): what
//    one stream costs, independent of the watcher processes that share this machine's cores;
//  - server memory per open stream (RSS growth / N) and the time to open all N.
// `--soak SECONDS` then holds the last count's streams while 10 revocations a second are sent for
// that long (not waiting for delivery): Revoke sent -> acknowledged against the idle baseline, the
// streams that do not hold the last revision 1 s after the last acknowledgement, and the server's
// RSS, sampled every second: the median of the soak's last tenth against that of its first (one
// sample moves by 100 MiB and more as V8 grows and returns heap pages).
// The watcher processes share the CPU with the server and PostgreSQL: at 50,000 streams their
// decoding is part of what the latencies include (the CPU row is the server's alone).
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { generateKeyPairSync } from "node:crypto";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../gen/agentid/v1/token_pb.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { root, startAgentid } from "./lib/procs.js";
import { startOwnPostgres } from "./lib/cluster.js";
import { bearer } from "./lib/clients.js";
import { Ctl, cpuSeconds, rss, wall } from "./lib/ctl.js";
import { systemPostgresBin } from "./lib/system-postgres.js";
import { quantile } from "./load/stats.js";

const full = process.argv.includes("--full");
const at = process.argv.indexOf("--streams");
const counts = at > 0 ? process.argv[at + 1]!.split(",").map(Number) : [1000, 10_000, 50_000];
const events = full ? 50 : 20;
const soakAt = process.argv.indexOf("--soak");
const soakSeconds = soakAt > 0 ? Number(process.argv[soakAt + 1]) : 0;
const soakRate = 10;
const warm = 3;
const perProcess = 10_000;
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
const log = (s: string) => console.error(`[feed-streams ${new Date().toISOString().slice(11, 19)}] ${s}`);

if (!process.env.AGENTID_TEST_POSTGRES && systemPostgresBin()) process.env.AGENTID_TEST_POSTGRES = "system";
const pgs = await startOwnPostgres();
const adminKey = newSecret(API_KEY_PREFIX);
const max = String(Math.max(...counts) + 1000);
// BENCH_PROFILE=dir writes the server's CPU profile there (node --cpu-prof).
const profile = process.env.BENCH_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
const server = await startAgentid({
  DATABASE_URL: pgs.url,
  AGENTID_ADMIN_KEY: adminKey,
  AGENTID_MAX_WATCHERS: max,
  AGENTID_MAX_WATCHERS_PER_CONNECTION: "1000",
  AGENTID_MAX_WATCHERS_PER_KEY: max,
  LOG_LEVEL: "warn",
}, profile);
const pid = server.proc.pid!;
const helpers: Ctl[] = [];
try {
  const transport = createGrpcTransport({ baseUrl: `http://${server.grpcAddress}`, interceptors: [bearer(adminKey)] });
  const agents = createClient(AgentService, transport);
  const tokens = createClient(TokenService, transport);
  const pub = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32);
  const { agent } = await agents.registerAgent({ name: "feed-streams", publicKey: new Uint8Array(pub), allowedScopes: ["read"], allowedAudiences: ["bench"] });
  const stock: string[] = [];
  const need = (counts.length + 2) * (events + warm) + soakSeconds * soakRate + 100;
  for (let i = 0; i < need; i += 100) {
    const b = await Promise.all(Array.from({ length: Math.min(100, need - i) }, () => tokens.issue({ agentId: agent!.agentId, scopes: ["read"], audiences: ["bench"], ttl: durationFromMs(3_600_000) })));
    stock.push(...b.map((t) => t.tokenId));
  }
  let head = 0;
  /** One Revoke: when it was sent, and how long until it was acknowledged. */
  const revokeOne = async () => {
    const sent = wall();
    const r = await tokens.revoke({ target: { case: "tokenId", value: stock.pop()! }, reason: "bench" });
    const rev = Number(r.revision);
    if (rev > head) head = rev;
    return { rev, sent, ackMs: wall() - sent };
  };
  const idleAcks = async () => {
    const acks: number[] = [];
    for (let i = 0; i < events + warm; i++) {
      const r = await revokeOne();
      if (i >= warm) acks.push(r.ackMs);
      await sleep(10);
    }
    return acks;
  };

  /** Opens n streams from head, in watcher processes; `done` counts the processes each revision reached in full. */
  const openStreams = async (n: number) => {
    const ws: Ctl[] = [];
    const done = new Map<number, number>();
    const t0 = Date.now();
    const opened = await Promise.all(
      Array.from({ length: Math.ceil(n / perProcess) }, async (_, i) => {
        const w = new Ctl("bench/load/watch-streams.ts");
        helpers.push(w);
        ws.push(w);
        await w.ready;
        w.on((e) => done.set(e.done, (done.get(e.done) ?? 0) + 1));
        const k = Math.min(perProcess, n - i * perProcess);
        return w.send({ cmd: "open", url: `http://${server.grpcAddress}`, n: k, perSession: 100, path: "/agentid.v1.RevocationService/WatchRevocations", headers: { authorization: `Bearer ${adminKey}` }, after: head, timeoutMs: 120_000 });
      }),
    );
    const ready = opened.reduce((a, o) => a + o.ready, 0);
    if (ready !== n) throw new Error(`only ${ready}/${n} streams opened: ${JSON.stringify(opened)}`);
    return { ws, done, openSeconds: (Date.now() - t0) / 1000 };
  };

  const idle = await idleAcks();
  const rows: Record<string, unknown>[] = [];
  for (const n of counts) {
    log(`${n.toLocaleString("en-US")} streams: opening`);
    await sleep(500);
    const rssBefore = rss(pid);
    const { ws, done, openSeconds } = await openStreams(n);
    await sleep(2000);
    const rssPerStream = (rss(pid) - rssBefore) / n;

    log(`${n.toLocaleString("en-US")} streams: ${events} events`);
    const sent: Record<number, number> = {};
    const acks: number[] = [];
    let cpu = 0;
    for (let i = 0; i < events + warm; i++) {
      const c0 = cpuSeconds(pid);
      const r = await revokeOne();
      const until = Date.now() + 30_000;
      while ((done.get(r.rev) ?? 0) < ws.length) {
        if (Date.now() > until) throw new Error(`event ${r.rev} did not reach all ${n} streams`);
        await sleep(1);
      }
      if (i >= warm) {
        cpu += cpuSeconds(pid) - c0;
        sent[r.rev] = r.sent;
        acks.push(r.ackMs);
      }
      await sleep(20);
    }
    const reports = await Promise.all(ws.map((w) => w.send({ cmd: "report", sent, samples: true })));
    for (const w of ws) await w.kill();
    const gaps = reports.reduce((a, r) => a + r.gaps + r.closedEarly, 0);
    if (gaps) throw new Error(`${gaps} gaps or closed streams at ${n}`);
    const lat: number[] = reports.flatMap((r) => r.lat);
    const last = Object.entries(sent).map(([rev, s]) => Math.max(...reports.map((r) => r.firstLast[rev][1])) - s);
    rows.push({
      streams: n,
      eventP50: quantile(lat, 0.5),
      eventP99: quantile(lat, 0.99),
      lastP50: quantile(last, 0.5),
      ackP50: quantile(acks, 0.5),
      ackP99: quantile(acks, 0.99),
      cpuUsPerStreamEvent: (cpu / events / n) * 1e6,
      rssKiBPerStream: rssPerStream / 1024,
      openSeconds,
    });
    log(JSON.stringify(rows.at(-1)));
  }
  let soak: Record<string, number> | undefined;
  if (soakSeconds > 0) {
    const n = counts.at(-1)!;
    log(`soak: ${n.toLocaleString("en-US")} streams, ${soakRate} revocations/s for ${soakSeconds} s`);
    const { ws } = await openStreams(n);
    await sleep(2000);
    const rssSamples: number[] = [];
    const acks: number[] = [];
    let failed = 0;
    const inFlight: Promise<void>[] = [];
    const t0 = Date.now();
    for (let i = 0; i < soakSeconds * soakRate; i++) {
      await sleep(t0 + (i * 1000) / soakRate - Date.now());
      inFlight.push(revokeOne().then((r) => void acks.push(r.ackMs), () => void failed++));
      if (i % soakRate === 0) rssSamples.push(rss(pid));
    }
    await Promise.all(inFlight);
    const end = head;
    await sleep(1000);
    const reports = await Promise.all(ws.map((w) => w.send({ cmd: "report", sent: {}, head: end })));
    const tenth = Math.max(1, Math.floor(rssSamples.length / 10));
    for (const w of ws) await w.kill();
    soak = {
      streams: n,
      seconds: soakSeconds,
      revocations: acks.length,
      failed,
      behind: reports.reduce((x, r) => x + r.behind, 0),
      gapsOrClosed: reports.reduce((x, r) => x + r.gaps + r.closedEarly, 0),
      ackP50: quantile(acks, 0.5),
      ackP99: quantile(acks, 0.99),
      rssFirst: quantile(rssSamples.slice(0, tenth), 0.5),
      rssLast: quantile(rssSamples.slice(-tenth), 0.5),
      rssMax: Math.max(...rssSamples),
    };
    log(JSON.stringify(soak));
  }
  const idleAfter = await idleAcks();
  const base = [...idle, ...idleAfter];
  const b50 = quantile(base, 0.5);
  const b99 = quantile(base, 0.99);
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const ratio = (x: number, b: number) => `${(x / b).toFixed(2)}x`;
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const lines = [
    `agentid feed, streams on one replica (${full ? "full" : "quick"}: ${events} events per count) on ${machine}, PostgreSQL ${process.env.AGENTID_TEST_POSTGRES === "system" ? "Debian's" : "embedded"}`,
    `Baseline: Revoke sent -> acknowledged with no streams open, p50 ${ms(b50)}, p99 ${ms(b99)} (before the first count and after the last).`,
    "",
    "| streams | event p50 (x ack p50) | event p99 (x ack p99) | last stream p50 | Revoke acked p99 (x idle) | server CPU per stream per event | server memory per stream | open all |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows.map((r: any) =>
      `| ${r.streams.toLocaleString("en-US")} | ${ms(r.eventP50)} (${ratio(r.eventP50, b50)}) | ${ms(r.eventP99)} (${ratio(r.eventP99, b99)}) | ${ms(r.lastP50)} | ${ms(r.ackP99)} (${ratio(r.ackP99, b99)}) | ${r.cpuUsPerStreamEvent.toFixed(1)} µs | ${r.rssKiBPerStream.toFixed(1)} KiB | ${r.openSeconds.toFixed(1)} s |`,
    ),
  ];
  if (soak) {
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    lines.push(
      "",
      `Soak: ${soak.streams.toLocaleString("en-US")} streams, ${soakRate} revocations/s for ${soak.seconds} s: ${soak.revocations} acknowledged, ${soak.failed} failed; ` +
        `streams without the last revision 1 s after the end: ${soak.behind} (gaps or closed: ${soak.gapsOrClosed}); ` +
        `Revoke acked p50 ${ms(soak.ackP50!)}, p99 ${ms(soak.ackP99!)} (${ratio(soak.ackP99!, b99)} idle p99); ` +
        `RSS median over the first tenth ${mib(soak.rssFirst!)}, over the last ${mib(soak.rssLast!)} (${(((soak.rssLast! - soak.rssFirst!) / soak.rssFirst!) * 100).toFixed(1)}%), max ${mib(soak.rssMax!)}.`,
    );
  }
  console.log(lines.join("\n"));
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "feed-streams.json"), JSON.stringify({ at: new Date().toISOString(), machine, mode: full ? "full" : "quick", idle: { p50: b50, p99: b99 }, rows, soak }, null, 2) + "\n");
} finally {
  for (const h of helpers) await h.kill().catch(() => {});
  await server.stop();
  await pgs.destroy();
}
process.exit(0);
