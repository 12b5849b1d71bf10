// Introspect throughput when 10% of requests ask for a scope the token lacks (each one a scope
// violation that reaches the trust score and the policies) against the same load with none, on
// one server in the same run. Violations are counted in memory and applied once a second in one
// batch, so a noisy resource server cannot turn reads into a write storm.
// Run: npx tsx bench/introspect-violations.ts [--full]
import { generateKeyPairSync } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { IntrospectRequestSchema, TokenService } from "../gen/agentid/v1/token_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { PolicyKind, PolicyService } from "../gen/agentid/v1/policy_pb.js";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import type { Summary } from "./load/stats.js";
import { runTs, startAgentid } from "./lib/procs.js";
import { startOwnPostgres } from "./lib/cluster.js";
import { bearer } from "./lib/clients.js";

export interface IntrospectViolationsResult {
  cleanPerSecond: number;
  violationsPerSecond: number;
  ratio: number;
}

export async function introspectViolations(full: boolean): Promise<IntrospectViolationsResult> {
  const load = { concurrency: 32, channels: 4, warmupMs: full ? 2000 : 500, durationMs: full ? 10_000 : 2000 };
  const pg = await startOwnPostgres();
  const adminKey = newSecret(API_KEY_PREFIX);
  const server = await startAgentid({ DATABASE_URL: pg.url, AGENTID_ADMIN_KEY: adminKey, AGENTID_DB_POOL_SIZE: "20", LOG_LEVEL: "warn" });
  try {
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [bearer(adminKey)] });
    const rsKey = (await createClient(KeyService, transport).createApiKey({ name: "bench", role: Role.RESOURCE_SERVER, audiences: ["bench"] })).secret;
    // Policies are evaluated on every batch, as in production; thresholds nobody reaches here.
    const policies = createClient(PolicyService, transport);
    await policies.createPolicy({ policy: { name: "scope-abuse", kind: PolicyKind.SCOPE_VIOLATIONS, threshold: 1_000_000_000, window: durationFromMs(3_600_000) } });
    await policies.createPolicy({ policy: { name: "low-trust", kind: PolicyKind.TRUST_BELOW, threshold: 1 } });
    // 100 agents, 20 tokens each: violations spread over many agents, as a noisy client would.
    const tokens = createClient(TokenService, transport);
    const issued: string[] = [];
    for (let a = 0; a < 100; a++) {
      const pub = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32);
      const { agent } = await createClient(AgentService, transport).registerAgent({ name: "bench", publicKey: pub, allowedScopes: ["read"], allowedAudiences: ["bench"] });
      const batch = await Promise.all(Array.from({ length: 20 }, () => tokens.issue({ agentId: agent!.agentId, scopes: ["read"], audiences: ["bench"] })));
      issued.push(...batch.map((t) => t.token));
    }
    const body = (token: string, scope: string) => Buffer.from(toBinary(IntrospectRequestSchema, create(IntrospectRequestSchema, { token, requiredScope: scope }))).toString("base64");
    const clean = issued.map((t) => body(t, "read"));
    const noisy = issued.map((t, i) => body(t, i % 10 === 0 ? "admin" : "read"));
    const run = (requests: string[]) =>
      runTs<Summary>("load/grpc-unary.ts", { ...load, address: server.grpcAddress, path: "/agentid.v1.TokenService/Introspect", requests, authorization: `Bearer ${rsKey}` });
    // Alternated, best of two each, so that a noisy neighbour hurts both alike.
    let cleanPerSecond = 0;
    let violationsPerSecond = 0;
    for (let round = 0; round < 2; round++) {
      cleanPerSecond = Math.max(cleanPerSecond, (await run(clean)).perSecond);
      violationsPerSecond = Math.max(violationsPerSecond, (await run(noisy)).perSecond);
    }
    return { cleanPerSecond, violationsPerSecond, ratio: violationsPerSecond / cleanPerSecond };
  } finally {
    server.proc.kill("SIGTERM");
    await new Promise((r) => server.proc.once("exit", r));
    await pg.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await introspectViolations(process.argv.includes("--full"));
  console.log(
    `Introspect gRPC with 10% scope violations ${Math.round(r.violationsPerSecond).toLocaleString("en-US")} req/s vs none ${Math.round(r.cleanPerSecond).toLocaleString("en-US")} req/s: ${r.ratio.toFixed(2)}x`,
  );
  process.exit(0);
}
