// `npm run bench` (quick) or `npm run bench -- --full`: every figure is a ratio against a baseline
// measured in the same run on the same machine; load always comes from separate processes.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { IntrospectRequestSchema, IssueRequestSchema, TokenService } from "../gen/agentid/v1/token_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import type { Summary } from "./load/stats.js";
import { root, runTs, startAgentid, startTs } from "./lib/procs.js";
import { sdkVerify } from "./sdk-verify.js";
import { usageIngest } from "./usage-ingest.js";
import { introspectViolations } from "./introspect-violations.js";
import { oauthToken } from "./oauth-token.js";
import { mcpKill } from "./mcp-kill.js";
import { feedUnderLoad } from "./feed-under-load.js";
import { startOwnPostgres } from "./lib/cluster.js";
import { bearer } from "./lib/clients.js";
import { generateKeyPairSync } from "node:crypto";

const full = process.argv.includes("--full");
const durationMs = full ? 10_000 : 2_000;
const warmupMs = full ? 2_000 : 500;
const concurrency = 32;
const channels = 4;
const tokenCount = full ? 20_000 : 2_000;

interface Row {
  figure: string;
  value: string;
  baseline: string;
  ratio: number;
  target: string;
  met: boolean;
}
const rows: Row[] = [];
const notes: string[] = [];
const raw: Record<string, unknown> = {};
const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(2));
function row(figure: string, value: number, unit: string, baseline: number, baselineName: string, op: ">=" | "<=", target: number) {
  const ratio = value / baseline;
  rows.push({
    figure,
    value: `${fmt(value)} ${unit}`,
    baseline: `${fmt(baseline)} ${unit} (${baselineName})`,
    ratio,
    target: `${op} ${target}x`,
    met: op === ">=" ? ratio >= target : ratio <= target,
  });
}

const pg = await startOwnPostgres();
const adminKey = newSecret(API_KEY_PREFIX);
// BENCH_PROFILE=dir writes the server's CPU profile there (node --cpu-prof), for finding hot spots.
const profile = process.env.BENCH_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
const server = await startAgentid({ DATABASE_URL: pg.url, AGENTID_ADMIN_KEY: adminKey, AGENTID_DB_POOL_SIZE: "20", LOG_LEVEL: "warn" }, profile);
const noop = await startTs<{ port: number }>("bench/noop-grpc-server.ts", []);
try {
  const transport = createConnectTransport({
    baseUrl: server.url,
    httpVersion: "1.1",
    interceptors: [bearer(adminKey)],
  });
  const agents = createClient(AgentService, transport);
  const tokens = createClient(TokenService, transport);
  const rsKey = (await createClient(KeyService, transport).createApiKey({ name: "bench", role: Role.RESOURCE_SERVER, audiences: ["bench"] })).secret;
  const pub = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32);
  const { agent } = await agents.registerAgent({ name: "bench", publicKey: pub, allowedScopes: ["read"], allowedAudiences: ["bench"] });
  const agentId = agent!.agentId;
  const issued: string[] = [];
  for (let i = 0; i < tokenCount; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, tokenCount - i) }, () => tokens.issue({ agentId, scopes: ["read"], audiences: ["bench"] })));
    issued.push(...batch.map((t) => t.token));
  }
  const introspectBodies = issued.map((token) => Buffer.from(toBinary(IntrospectRequestSchema, create(IntrospectRequestSchema, { token, requiredScope: "read" }))).toString("base64"));
  const load = { concurrency, channels, warmupMs, durationMs };

  // 1. Introspect over gRPC against a no-op grpc-js unary.
  const noopRun = await runTs<Summary>("load/grpc-unary.ts", { ...load, address: `127.0.0.1:${noop.ready.port}`, path: "/bench.Noop/Call", requests: [""] });
  const grpcIntro = await runTs<Summary>("load/grpc-unary.ts", {
    ...load,
    address: server.grpcAddress,
    path: "/agentid.v1.TokenService/Introspect",
    requests: introspectBodies,
    authorization: `Bearer ${rsKey}`,
  });
  raw.noopGrpc = noopRun;
  raw.introspectGrpc = grpcIntro;
  row("Introspect, gRPC (distinct tokens, DB path)", grpcIntro.perSecond, "req/s", noopRun.perSecond, "no-op grpc-js unary", ">=", 0.5);

  // 2. Introspect over Connect, HTTP/1.1 and HTTP/2, against the gRPC figure.
  for (const httpVersion of ["1.1", "2"] as const) {
    const r = await runTs<Summary>("load/connect-unary.ts", {
      ...load,
      url: server.url,
      path: "/agentid.v1.TokenService/Introspect",
      httpVersion,
      requests: introspectBodies,
      authorization: `Bearer ${rsKey}`,
    });
    raw[`introspectConnectHttp${httpVersion}`] = r;
    row(`Introspect, Connect HTTP/${httpVersion}`, r.perSecond, "req/s", grpcIntro.perSecond, "Introspect gRPC", ">=", 0.5);
  }

  // 6. Issue against a plain single-row INSERT at the same concurrency.
  const insert = await runTs<Summary>("load/pg-insert.ts", { ...load, databaseUrl: pg.url });
  const issueBody = Buffer.from(toBinary(IssueRequestSchema, create(IssueRequestSchema, { agentId, scopes: ["read"], audiences: ["bench"] }))).toString("base64");
  const issue = await runTs<Summary>("load/grpc-unary.ts", {
    ...load,
    address: server.grpcAddress,
    path: "/agentid.v1.TokenService/Issue",
    requests: [issueBody],
    authorization: `Bearer ${adminKey}`,
  });
  raw.pgInsert = insert;
  raw.issueGrpc = issue;
  row("Issue, gRPC", issue.perSecond, "req/s", insert.perSecond, "single-row INSERT", ">=", 0.6);

  // 6b, 9. The write path at the domain level, against a single-row INSERT alternated with it in
  // the same process and pool (each bench starts its own PostgreSQL).
  const slices = { BENCH_SLICES: full ? "40" : "12" };
  const issueDb = await runTs<{ issuePerSecond: number; insertPerSecond: number }>("audit-append.ts", {}, slices);
  raw.issueDomain = issueDb;
  row("Issue, domain level (token + numbered log entry)", issueDb.issuePerSecond, "/s", issueDb.insertPerSecond, "single-row INSERT, same pool", ">=", 0.6);
  const revokeDb = await runTs<{ revokePerSecond: number; insertPerSecond: number }>("revoke-throughput.ts", {}, slices);
  raw.revokeDomain = revokeDb;
  row("Revocations/s, no watchers (domain level, committed and numbered)", revokeDb.revokePerSecond, "/s", revokeDb.insertPerSecond, "single-row INSERT, same pool", ">=", 0.25);

  // OAuth: tokens from /oauth2/token against the Issue RPC with the same credential (the agent's
  // key), and with an issuer key, alternated on one server of its own.
  const oauth = await oauthToken(full);
  raw.oauthToken = oauth;
  row("Tokens from POST /oauth2/token (private_key_jwt)", oauth.oauthPerSecond, "/s", oauth.selfIssuePerSecond, "Issue RPC signed by the agent", ">=", 0.8);
  notes.push(
    `Tokens from /oauth2/token ${fmt(oauth.oauthPerSecond)}/s vs the Issue RPC with an issuer key ${fmt(oauth.keyIssuePerSecond)}/s: an agent's own credential costs a transaction per request (clock, key, signature, jti or nonce once), on both signed paths alike`,
  );

  // MCP: a kill ends the tool call in flight, against the feed event of the same kills.
  const mcp = await mcpKill(full);
  raw.mcpKill = mcp;
  row(`Kill -> MCP tool call ended at the agent, p99 (${mcp.trials} trials)`, mcp.endedP99Ms, "ms", mcp.eventP99Ms, "kill -> feed event, p99, same trials", "<=", 2);
  notes.push(
    `Kill -> MCP call ended at the agent: p50 ${mcp.endedP50Ms.toFixed(1)} ms, p99 ${mcp.endedP99Ms.toFixed(1)} ms; kill -> feed event: p50 ${mcp.eventP50Ms.toFixed(1)} ms, p99 ${mcp.eventP99Ms.toFixed(1)} ms; progress after the end: ${mcp.lateProgress}`,
  );

  // The feed while revocations pour in: 2 replicas, 1,000 watchers, 64 Revokes in flight.
  const ful = await feedUnderLoad(full);
  raw.feedUnderLoad = ful;
  row(
    `Revoke sent -> event at a watcher, p99, 1,000 watchers on 2 replicas, 64 Revokes in flight (${ful.lost ? "EVENTS LOST" : "0 lost"})`,
    ful.eventP99, "ms", ful.ackP99, "revoke sent -> acknowledged, p99, same run", "<=", 1.5,
  );
  notes.push(
    `Feed under write load on the ${ful.postgres}: ${ful.revocations} revocations at ${fmt(ful.perSecond)}/s; revoke sent -> acknowledged p50 ${ful.ackP50.toFixed(1)} ms, p99 ${ful.ackP99.toFixed(1)} ms; -> event at a watcher p50 ${ful.eventP50.toFixed(1)} ms, p99 ${ful.eventP99.toFixed(1)} ms`,
  );

  // 3. SDK verify (cache hit) against jose ES256 in one process, with revocation-to-eviction.
  const sdk = await sdkVerify(full);
  raw.sdkVerify = sdk;
  row("SDK verify, cache hit (in process)", sdk.sdkPerSecond, "verifies/s", sdk.josePerSecond, "jose ES256 jwtVerify", ">=", 100);
  row("SDK verify with usage reporting", sdk.sdkPerSecond, "verifies/s", sdk.sdkNoReportPerSecond, "reporting off", ">=", 0.9);

  // 7. Behaviour signals: usage ingestion against a plain INSERT; Introspect with scope violations.
  const ingest = await usageIngest(full);
  raw.usageIngest = ingest;
  row(`Usage ingest (${ingest.recordsPerBatch} records, ${ingest.agents} agents per batch)`, ingest.ingestPerSecond, "records/s", ingest.insertPerSecond, "multi-row INSERT into a bare table", ">=", 0.3);
  notes.push(`Usage ingest: one batch of ${ingest.recordsPerBatch} records for ${ingest.agents} agents took ${ingest.statementsPerBatch} statements`);
  const noisy = await introspectViolations(full);
  raw.introspectViolations = noisy;
  row("Introspect, gRPC, 10% scope violations", noisy.violationsPerSecond, "req/s", noisy.cleanPerSecond, "no violations", ">=", 0.8);
  notes.push(
    `Revocation to eviction in the SDK (Revoke returned -> verify answers revoked): p50 ${sdk.evictionP50Ms.toFixed(2)} ms, p99 ${sdk.evictionP99Ms.toFixed(2)} ms (${sdk.evictions} samples)`,
  );

  for (const [name, s] of Object.entries(raw) as [string, Summary][]) {
    if ("errors" in s && s.errors) console.error(`warning: ${name} had ${s.errors} errors, first: ${s.firstError}`);
  }
  const latency = `Introspect gRPC at concurrency ${concurrency}: p50 ${(grpcIntro.p50us / 1000).toFixed(2)} ms, p99 ${(grpcIntro.p99us / 1000).toFixed(2)} ms`;
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const lines = [
    `agentid bench (${full ? "full" : "quick"}: ${durationMs / 1000}s per figure, concurrency ${concurrency}) on ${machine}`,
    "",
    "| figure | value | baseline | ratio | target | |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows.map((r) => `| ${r.figure} | ${r.value} | ${r.baseline} | ${r.ratio.toFixed(2)}x | ${r.target} | ${r.met ? "met" : "MISSED"} |`),
    "",
    latency,
    ...notes,
  ];
  console.log(lines.join("\n"));
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(
    join(root, "bench", "results", full ? "full.json" : "quick.json"),
    JSON.stringify({ at: new Date().toISOString(), machine, mode: full ? "full" : "quick", rows, raw }, null, 2) + "\n",
  );
} finally {
  server.proc.kill("SIGTERM");
  noop.proc.kill("SIGTERM");
  await new Promise((r) => server.proc.once("exit", r));
  await pg.destroy();
}
// Items 4, 5, 7 and 8 (the feed at 1/1,000/10,000 streams, memory, throughput, isolation) start
// their own PostgreSQL and server, after this one has stopped.
const scale = spawnSync(process.execPath, [join(root, "node_modules", "tsx", "dist", "cli.mjs"), join(root, "bench", "feed-scale.ts"), ...(full ? ["--full"] : [])], {
  stdio: "inherit",
});
// Issue 15: Revoke p99 during a 10,000-stream reconnect storm, beside idle.
const storm = spawnSync(process.execPath, [join(root, "node_modules", "tsx", "dist", "cli.mjs"), join(root, "bench", "feed-storm.ts")], { stdio: "inherit" });
process.exit(scale.status || storm.status || 0);

