// Reconnect storm (issue 15): Revoke p99 while 10,000 streams subscribe from 0 at once, beside
// Revoke p99 on the same idle server in the same run; plus how long the storm took to be served
// and what the feed's counters say. One embedded PostgreSQL, one `agentid serve` (its own
// process); the streams are another process over 100 HTTP/2 connections.
// Run: npx tsx bench/feed-storm.ts [streams] [seeded log rows] [--cpu-prof] [--node=<flag for the server's node>...]
// (SERVER_LOG=<file> appends the server's stdout there, e.g. with --node=--trace-gc.)
import { generateKeyPairSync } from "node:crypto";
import { appendFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../gen/agentid/v1/token_pb.js";
import { WatchRevocationsRequestSchema } from "../gen/agentid/v1/revocation_pb.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { startAgentid } from "./lib/procs.js";
import { startOwnPostgres } from "./lib/cluster.js";
import { Ctl } from "./lib/ctl.js";
import { appendLogRows } from "./lib/sequenced-db.js";

const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const streams = Number(args[0] ?? 10_000);
const seeded = Number(args[1] ?? 200);
const profDir = process.argv.includes("--cpu-prof") ? mkdtempSync(join(tmpdir(), "agentid-prof-")) : undefined;
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
const log = (s: string) => console.error(`[feed-storm ${new Date().toISOString().slice(11, 19)}] ${s}`);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;

const pgs = await startOwnPostgres();
const adminKey = newSecret(API_KEY_PREFIX);
const server = await startAgentid(
  {
    DATABASE_URL: pgs.url,
    AGENTID_ADMIN_KEY: adminKey,
    AGENTID_MAX_WATCHERS: "20000",
    AGENTID_MAX_WATCHERS_PER_CONNECTION: "1000",
    AGENTID_MAX_WATCHERS_PER_KEY: "20000",
    LOG_LEVEL: "info",
  },
  [...(profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []), ...process.argv.filter((a) => a.startsWith("--node=")).map((a) => a.slice(7))],
);
// The feed logs its counters every 10 s: echo them.
server.proc.stdout?.on("data", (d: Buffer) => {
  if (process.env.SERVER_LOG) appendFileSync(process.env.SERVER_LOG, d);
  for (const l of String(d).split("\n")) if (l.includes("feed: stats")) console.error(`[server] ${l}`);
});
const fleet = new Ctl("bench/load/watch-streams.ts");
try {
  const auth: Interceptor = (next) => (req) => (req.header.set("authorization", `Bearer ${adminKey}`), next(req));
  const transport = createGrpcTransport({ baseUrl: `http://${server.grpcAddress}`, interceptors: [auth] });
  const agents = createClient(AgentService, transport);
  const tokens = createClient(TokenService, transport);
  const { agent } = await agents.registerAgent({ name: "storm", publicKey: new Uint8Array(generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32)) });
  const ids: string[] = [];
  for (let i = 0; i < 1200; i += 100) {
    const b = await Promise.all(Array.from({ length: 100 }, () => tokens.issue({ agentId: agent!.agentId, ttl: durationFromMs(3_600_000) })));
    ids.push(...b.map((t) => t.tokenId));
  }
  await appendLogRows(pgs.url, seeded);
  let next = 0;
  /** Revokes at `perSecond` for `ms`; latencies from the call being sent to its answer. */
  async function revokeFor(ms: number, perSecond: number): Promise<{ lat: number[]; slowest: string; failed: number }> {
    const lat: number[] = [];
    const at: [number, number][] = [];
    let failed = 0;
    const inFlight: Promise<void>[] = [];
    const start = Date.now();
    for (let i = 0; Date.now() - start < ms; i++) {
      const id = ids[next++]!;
      const t0 = performance.now();
      inFlight.push(
        tokens.revoke({ target: { case: "tokenId", value: id }, reason: "storm" }, { timeoutMs: 60_000 }).then(
          () => {
            lat.push(performance.now() - t0);
            at.push([Date.now() - start, performance.now() - t0]);
          },
          () => void failed++,
        ),
      );
      await sleep(Math.max(0, start + ((i + 1) * 1000) / perSecond - Date.now()));
    }
    await Promise.all(inFlight);
    // When the slowest were sent (ms into the run): tells a start-up burst from a steady cost.
    const slowest = at.sort((a, b) => b[1] - a[1]).slice(0, 5).map(([t, l]) => `${l.toFixed(0)} ms at +${t} ms`).join(", ");
    return { lat, slowest, failed };
  }
  /** The server's own figures (the event-loop delay quantiles cover the time since the last scrape). */
  const scrape = () =>
    fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } }).then((r) => (r.ok ? r.text() : ""), () => "");
  log("Revoke, warming up");
  const warm = await revokeFor(1000, 20);
  log("Revoke, idle");
  // As long as the storm phase, so that both p99s are the same rank of the same number of calls.
  const idle = await revokeFor(10_000, 20);
  const idleLoop = await scrape();
  await fleet.ready;
  const body = Buffer.from(toBinary(WatchRevocationsRequestSchema, create(WatchRevocationsRequestSchema, { afterRevision: 0n }))).toString("base64");
  log(`storm: ${streams} streams from 0`);
  const t0 = Date.now();
  await fleet.send({ cmd: "open", urls: [`http://${server.grpcAddress}`], n: streams, perSession: 100, path: "/agentid.v1.RevocationService/WatchRevocations", headers: { authorization: `Bearer ${adminKey}` }, body, after: 0, record: false, wait: false });
  const storm = revokeFor(10_000, 20);
  let report: any;
  for (;;) {
    report = await fleet.send({ cmd: "report" });
    if (report.ready + report.closedEarly >= streams || Date.now() - t0 > 300_000) break;
    await sleep(250);
  }
  const servedMs = Date.now() - t0;
  const busy = await storm;
  const metrics = await scrape();
  const b99 = pct(busy.lat, 0.99);
  const i99 = pct(idle.lat, 0.99);
  console.log(`feed storm: ${streams} streams subscribing from 0 over 100 connections, ${seeded + warm.lat.length + idle.lat.length} events in the log when the storm began, 20 Revoke/s asked`);
  console.log(`| figure | value | baseline (idle, same run) | ratio | target |`);
  console.log(`| --- | --- | --- | --- | --- |`);
  console.log(`| Revoke p99 during the storm (sent -> answered) | ${b99.toFixed(1)} ms | ${i99.toFixed(1)} ms | ${(b99 / i99).toFixed(2)}x | <= 3x |`);
  console.log(`| Revoke p50 during the storm | ${pct(busy.lat, 0.5).toFixed(1)} ms | ${pct(idle.lat, 0.5).toFixed(1)} ms | ${(pct(busy.lat, 0.5) / pct(idle.lat, 0.5)).toFixed(2)}x | |`);
  console.log(`| Revokes failed during the storm | ${busy.failed} of ${busy.lat.length + busy.failed} | ${idle.failed} | | 0 |`);
  console.log(`| Streams served (first message) | ${report.ready} of ${streams} in ${(servedMs / 1000).toFixed(1)} s, ${report.closedEarly} closed | | | all |`);
  const revokeHist = (m: string) =>
    new Map(m.split("\n").filter((l) => l.startsWith("agentid_rpc_duration_seconds_bucket") && l.includes('method="Revoke"') && l.includes('transport="grpc"')).map((l) => [l.match(/le="([^"]+)"/)![1]!, Number(l.split(" ").at(-1))]));
  const [hi, hs] = [revokeHist(idleLoop), revokeHist(metrics)];
  console.log(`server-side Revoke time (decoded request -> response), cumulative counts by bound: idle ${[...hi].map(([k, v]) => `${k}:${v}`).join(" ")}; storm ${[...hs].map(([k, v]) => `${k}:${v - (hi.get(k) ?? 0)}`).join(" ")}`);
  console.log(`slowest Revokes: idle ${idle.slowest}; storm ${busy.slowest}`);
  const loopLines = (m: string) => m.split("\n").filter((l) => l.startsWith("agentid_event_loop_delay_seconds"));
  console.log(`server event-loop delay, idle phase: ${loopLines(idleLoop).join("; ")}`);
  console.log(`server event-loop delay, storm: ${loopLines(metrics).join("; ")}`);
  if (metrics) console.log(metrics.split("\n").filter((l) => l.startsWith("agentid_feed")).join("\n"));
  if (profDir) console.log(`CPU profile of the server: ${profDir} (written at exit)`);
} finally {
  await fleet.kill();
  server.proc.kill("SIGTERM");
  await new Promise((r) => server.proc.once("exit", r));
  await pgs.destroy();
}
process.exit(0);
