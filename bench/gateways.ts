// `npm run bench:gateways` (quick) or `-- --full`: the gateway surfaces' costs, as ratios against
// baselines measured in the same run (load from separate processes, as bench/run.ts does).
//  1. Envoy ext_authz Check (answered from memory) against a no-op grpc-js unary. Target >= 0.5x.
//  2. Introspect with Prometheus metrics on against the same server build with them off. >= 0.95x.
import { generateKeyPairSync } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { IntrospectRequestSchema, TokenService } from "../gen/agentid/v1/token_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { Authorization, CheckRequestSchema } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import type { Summary } from "./load/stats.js";
import { runTs, startAgentid, startTs } from "./lib/procs.js";
import { startOwnPostgres } from "./lib/cluster.js";
import { bearer } from "./lib/clients.js";
import { cpuSeconds } from "./lib/ctl.js";

const full = process.argv.includes("--full");
const load = { concurrency: 32, channels: 4, warmupMs: full ? 2_000 : 500, durationMs: full ? 10_000 : 2_000 };
const tokenCount = full ? 5_000 : 1_000;

const pg = await startOwnPostgres();
const adminKey = newSecret(API_KEY_PREFIX);
const env = { DATABASE_URL: pg.url, AGENTID_ADMIN_KEY: adminKey, AGENTID_DB_POOL_SIZE: "20", LOG_LEVEL: "warn" };
// Two replicas of one database, identical but for metrics; only the one under load does work.
const on = await startAgentid({ ...env, AGENTID_METRICS: "on" });
const off = await startAgentid({ ...env, AGENTID_METRICS: "off" });
const noop = await startTs<{ port: number }>("bench/noop-grpc-server.ts", []);
try {
  const transport = createConnectTransport({ baseUrl: on.url, httpVersion: "1.1", interceptors: [bearer(adminKey)] });
  const tokens = createClient(TokenService, transport);
  const rsKey = (await createClient(KeyService, transport).createApiKey({ name: "bench", role: Role.RESOURCE_SERVER, audiences: ["bench"] })).secret;
  const pub = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32);
  const agentId = (await createClient(AgentService, transport).registerAgent({ name: "bench", publicKey: pub, allowedScopes: ["read"], allowedAudiences: ["bench"] })).agent!.agentId;
  const issued: string[] = [];
  for (let i = 0; i < tokenCount; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, tokenCount - i) }, () => tokens.issue({ agentId, scopes: ["read"], audiences: ["bench"] })));
    issued.push(...batch.map((t) => t.token));
  }
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  // What Envoy sends for `GET /orders/42` with the agent's token, scope from the route's context extensions.
  const checkBodies = issued.map((token) =>
    b64(
      toBinary(
        CheckRequestSchema,
        create(CheckRequestSchema, {
          attributes: {
            request: {
              http: {
                id: "1",
                method: "GET",
                path: "/orders/42",
                host: "orders.example.com",
                scheme: "https",
                protocol: "HTTP/1.1",
                headers: { ":authority": "orders.example.com", ":method": "GET", ":path": "/orders/42", authorization: `Bearer ${token}`, "user-agent": "bench" },
              },
            },
            contextExtensions: { agentid_scope: "read" },
          },
        }),
      ),
    ),
  );
  const introspectBodies = issued.map((token) => b64(toBinary(IntrospectRequestSchema, create(IntrospectRequestSchema, { token, requiredScope: "read" }))));
  const pids = new Map([
    [`127.0.0.1:${noop.ready.port}`, noop.proc.pid!],
    [on.grpcAddress, on.proc.pid!],
    [off.grpcAddress, off.proc.pid!],
  ]);
  type Measured = Summary & { perCpuSecond: number };
  const grpcLoad = async (address: string, path: string, requests: string[], authorization?: string): Promise<Measured> => {
    const pid = pids.get(address)!;
    const before = cpuSeconds(pid);
    const r = await runTs<Summary>("load/grpc-unary.ts", { ...load, address, path, requests, authorization });
    // The warm-up's calls are in the CPU time too: count them at the measured rate.
    const calls = r.perSecond * ((load.durationMs + load.warmupMs) / 1000);
    return { ...r, perCpuSecond: calls / (cpuSeconds(pid) - before) };
  };

  // Every token checked once first, as a gateway sees the same tokens again and again: the
  // measured calls are memory answers.
  const envoy = createClient(Authorization, createGrpcTransport({ baseUrl: `http://${on.grpcAddress}`, interceptors: [bearer(rsKey)] }));
  const { fromBinary } = await import("@bufbuild/protobuf");
  for (let i = 0; i < checkBodies.length; i += 100) {
    await Promise.all(checkBodies.slice(i, i + 100).map((b) => envoy.check(fromBinary(CheckRequestSchema, Buffer.from(b, "base64")))));
  }
  // Alternated, best of two each, so a noisy neighbour's second does not decide a ratio.
  const noopLoad = () => grpcLoad(`127.0.0.1:${noop.ready.port}`, "/bench.Noop/Call", [""]);
  const checkLoad = () => grpcLoad(on.grpcAddress, "/envoy.service.auth.v3.Authorization/Check", checkBodies, `Bearer ${rsKey}`);
  const noopRuns = [await noopLoad(), await checkLoad()];
  const checkRuns = [noopRuns.pop()!];
  noopRuns.push(await noopLoad());
  checkRuns.push(await checkLoad());
  const best = (rs: Measured[]) => rs.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  const bestCpu = (rs: Measured[]) => Math.max(...rs.map((r) => r.perCpuSecond));
  const noopRun = best(noopRuns);
  const check = best(checkRuns);

  const introspect = (address: string) => grpcLoad(address, "/agentid.v1.TokenService/Introspect", introspectBodies, `Bearer ${rsKey}`);
  const offRuns = [await introspect(off.grpcAddress)];
  const onRuns = [await introspect(on.grpcAddress)];
  offRuns.push(await introspect(off.grpcAddress));
  onRuns.push(await introspect(on.grpcAddress));

  const all: [string, Summary][] = [["noop", noopRun], ["check", check], ...offRuns.map((r, i): [string, Summary] => [`off${i}`, r]), ...onRuns.map((r, i): [string, Summary] => [`on${i}`, r])];
  const cpuCheck = bestCpu(checkRuns) / bestCpu(noopRuns);
  const scrape = await (await fetch(`${on.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } })).text();
  const cache = scrape.split("\n").filter((l) => l.startsWith("agentid_ext_authz_")).join("; ");
  const cpuMetrics = bestCpu(onRuns) / bestCpu(offRuns);
  for (const [name, s] of all) {
    if (s.errors) console.error(`warning: ${name} had ${s.errors} errors, first: ${s.firstError}`);
  }
  const ratioCheck = check.perSecond / noopRun.perSecond;
  const ratioMetrics = best(onRuns).perSecond / best(offRuns).perSecond;
  const f = (n: number) => Math.round(n).toLocaleString("en-US");
  console.log(
    [
      `agentid gateway bench (${full ? "full" : "quick"}: ${load.durationMs / 1000}s per figure, concurrency ${load.concurrency})`,
      "",
      "| figure | value | baseline | ratio | target | |",
      "| --- | --- | --- | --- | --- | --- |",
      `| ext_authz Check, gRPC (${tokenCount} tokens, from memory) | ${f(check.perSecond)} req/s | ${f(noopRun.perSecond)} req/s (no-op grpc-js unary) | ${ratioCheck.toFixed(2)}x | >= 0.5x | ${ratioCheck >= 0.5 ? "met" : "MISSED"} |`,
      `| Introspect, gRPC, metrics on | ${f(best(onRuns).perSecond)} req/s | ${f(best(offRuns).perSecond)} req/s (metrics off) | ${ratioMetrics.toFixed(2)}x | >= 0.95x | ${ratioMetrics >= 0.95 ? "met" : "MISSED"} |`,
      `| ext_authz Check per server CPU-second | ${f(bestCpu(checkRuns))} req/CPU-s | ${f(bestCpu(noopRuns))} req/CPU-s (no-op grpc-js unary) | ${cpuCheck.toFixed(2)}x | >= 0.5x | ${cpuCheck >= 0.5 ? "met" : "MISSED"} |`,
      `| Introspect per server CPU-second, metrics on | ${f(bestCpu(onRuns))} req/CPU-s | ${f(bestCpu(offRuns))} req/CPU-s (metrics off) | ${cpuMetrics.toFixed(2)}x | >= 0.95x | ${cpuMetrics >= 0.95 ? "met" : "MISSED"} |`,
      "",
      `Check latency at concurrency ${load.concurrency}: p50 ${(check.p50us / 1000).toFixed(2)} ms, p99 ${(check.p99us / 1000).toFixed(2)} ms`,
      `Check runs (req/s): ${checkRuns.map((r) => f(r.perSecond)).join(", ")}; no-op runs ${noopRuns.map((r) => f(r.perSecond)).join(", ")}`,
      `ext_authz: ${cache}`,
      `Introspect runs (req/s): off ${offRuns.map((r) => f(r.perSecond)).join(", ")}; on ${onRuns.map((r) => f(r.perSecond)).join(", ")}`,
    ].join("\n"),
  );
} finally {
  on.proc.kill("SIGTERM");
  off.proc.kill("SIGTERM");
  noop.proc.kill("SIGTERM");
  await pg.destroy();
}
