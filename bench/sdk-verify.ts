// SDK verify (cache hit) against a JWT ES256 verify with `jose`, both in this process (the
// resource server's), and the revocation-to-eviction latency while it runs.
// Run: npx tsx bench/sdk-verify.ts [--full]
import { generateKeyPairSync } from "node:crypto";
import { performance } from "node:perf_hooks";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { SignJWT, jwtVerify, generateKeyPair } from "jose";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../gen/agentid/v1/token_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { createVerifier } from "../src/client/index.js";
import { startAgentid } from "./lib/procs.js";
import { startOwnPostgres } from "./lib/cluster.js";
import { bearer } from "./lib/clients.js";
import { quantile } from "./load/stats.js";

export interface SdkVerifyResult {
  /** With usage reporting on (the default), and off. */
  sdkPerSecond: number;
  sdkNoReportPerSecond: number;
  reportingRatio: number;
  josePerSecond: number;
  ratio: number;
  evictionP50Ms: number;
  evictionP99Ms: number;
  evictions: number;
}

/** Calls `once` back to back for durationMs after a warm-up; returns calls per second. */
async function rate(durationMs: number, once: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 200; i++) await once(i);
  let n = 0;
  const start = performance.now();
  const end = start + durationMs;
  while (performance.now() < end) {
    // Batches of 100 keep the clock reads off the measured path.
    for (let k = 0; k < 100; k++) await once(n++);
  }
  return (n / (performance.now() - start)) * 1000;
}

export async function sdkVerify(full: boolean): Promise<SdkVerifyResult> {
  const durationMs = full ? 10_000 : 5000;
  const pg = await startOwnPostgres();
  const adminKey = newSecret(API_KEY_PREFIX);
  const server = await startAgentid({ DATABASE_URL: pg.url, AGENTID_ADMIN_KEY: adminKey, LOG_LEVEL: "warn" });
  try {
    const transport = createConnectTransport({
      baseUrl: server.url,
      httpVersion: "1.1",
      interceptors: [bearer(adminKey)],
    });
    const rsKey = (await createClient(KeyService, transport).createApiKey({ name: "rs", role: Role.RESOURCE_SERVER, audiences: ["bench"] })).secret;
    const pub = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32);
    const agentId = (await createClient(AgentService, transport).registerAgent({ name: "bench", publicKey: pub, allowedScopes: ["read"], allowedAudiences: ["bench"] })).agent!.agentId;
    const tokens = createClient(TokenService, transport);
    const issued = await Promise.all(Array.from({ length: 1000 }, () => tokens.issue({ agentId, scopes: ["read"], audiences: ["bench"] })));

    const verifier = createVerifier({ endpoint: `http://${server.grpcAddress}`, audience: "bench", apiKey: rsKey, cacheSize: 10_000 });
    const quiet = createVerifier({ endpoint: `http://${server.grpcAddress}`, audience: "bench", apiKey: rsKey, cacheSize: 10_000, reportUsage: false });
    await Promise.all([verifier.ready(), quiet.ready()]);
    for (const t of issued) await verifier.verify(t.token, { scope: "read" });
    for (const t of issued) await quiet.verify(t.token, { scope: "read" });
    // The JWT a self-contained design would check on every request: ES256, key already imported.
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwt = await new SignJWT({ scope: "read", sub: agentId })
      .setProtectedHeader({ alg: "ES256" })
      .setAudience("bench")
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(privateKey);

    // Interleaved in short slices, best slice of each: on a shared machine a noisy neighbour then
    // hurts all three alike instead of whichever ran during the noise.
    const opts = { scope: "read" };
    let sdkPerSecond = 0;
    let sdkNoReportPerSecond = 0;
    let josePerSecond = 0;
    const rounds = full ? 10 : 5;
    for (let round = 0; round < rounds; round++) {
      sdkNoReportPerSecond = Math.max(sdkNoReportPerSecond, await rate(durationMs / rounds, (i) => quiet.verify(issued[i % 900]!.token, opts)));
      sdkPerSecond = Math.max(sdkPerSecond, await rate(durationMs / rounds, (i) => verifier.verify(issued[i % 900]!.token, opts)));
      josePerSecond = Math.max(josePerSecond, await rate(durationMs / rounds, () => jwtVerify(jwt, publicKey, { audience: "bench" })));
    }
    await quiet.close();

    // Revocation to eviction: from Revoke returning to this verifier answering "revoked".
    const delays: number[] = [];
    for (const t of issued.slice(900, full ? 1000 : 940)) {
      await tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "bench" });
      const revokedAt = performance.now();
      while ((await verifier.verify(t.token, { scope: "read" })).active) await new Promise((r) => setImmediate(r));
      delays.push(performance.now() - revokedAt);
    }
    await verifier.close();
    return {
      sdkPerSecond,
      sdkNoReportPerSecond,
      reportingRatio: sdkPerSecond / sdkNoReportPerSecond,
      josePerSecond,
      ratio: sdkPerSecond / josePerSecond,
      evictionP50Ms: quantile(delays, 0.5),
      evictionP99Ms: quantile(delays, 0.99),
      evictions: delays.length,
    };
  } finally {
    await server.stop();
    await pg.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await sdkVerify(process.argv.includes("--full"));
  console.log(
    `SDK verify (cache hit) ${Math.round(r.sdkPerSecond).toLocaleString("en-US")}/s vs jose ES256 jwtVerify ${Math.round(r.josePerSecond).toLocaleString("en-US")}/s: ${r.ratio.toFixed(1)}x\n` +
      `SDK verify with usage reporting ${Math.round(r.sdkPerSecond).toLocaleString("en-US")}/s vs without ${Math.round(r.sdkNoReportPerSecond).toLocaleString("en-US")}/s: ${r.reportingRatio.toFixed(2)}x\n` +
      `revocation -> eviction (Revoke returned -> verify says revoked), ${r.evictions} samples: p50 ${r.evictionP50Ms.toFixed(2)} ms, p99 ${r.evictionP99Ms.toFixed(2)} ms`,
  );
  process.exit(0);
}
