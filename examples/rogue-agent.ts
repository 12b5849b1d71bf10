// The product brief's scenario, end to end, with no human involved: a customer-service agent with
// a steady baseline suddenly makes 25x the requests and reads scopes it has never used, through a
// resource server that verifies with the SDK. Its trust score falls (the factors say why), a
// policy revokes it, the feed evicts it from the SDK's cache and the next request is refused, and
// the transparency log shows what it did, bucket by bucket. Prints the timeline at the end.
//
// Time is compressed by the server's configuration: one trust window (AGENTID_TRUST_WINDOW_SECONDS)
// stands for an hour, usage is bucketed per AGENTID_ACTIVITY_BUCKET_SECONDS. examples/rogue-agent.sh
// starts a server configured that way and runs this against it.
// Run: AGENTID_URL=http://127.0.0.1:8080 AGENTID_GRPC=http://127.0.0.1:50051 AGENTID_API_KEY=ak_(admin) \
//      WINDOW_SECONDS=2 npx tsx examples/rogue-agent.ts
import { generateKeyPairSync } from "node:crypto";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { durationFromMs, timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../gen/agentid/v1/token_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { PolicyKind, PolicyService } from "../gen/agentid/v1/policy_pb.js";
import { ActivityService, type ActivityEvent, type TrustScore } from "../gen/agentid/v1/activity_pb.js";
import { createVerifier } from "../src/client/index.js";
import { createTransport } from "../src/client/transport.js";
import { formatTimeline } from "../src/cli/activity.js";
import { ordersApi } from "./resource-server.js";

export interface RogueAgentOptions {
  /** agentid's HTTP (Connect) and gRPC base URLs, and an admin key. */
  httpUrl: string;
  grpcUrl: string;
  adminKey: string;
  /** The server's trust window and usage bucket (AGENTID_TRUST_WINDOW_SECONDS, AGENTID_ACTIVITY_BUCKET_SECONDS). */
  windowMs: number;
  bucketMs: number;
  /** Requests per window: the baseline (about 200 an hour, scaled) and the spike (25x). */
  baselinePerWindow?: number;
  spikePerWindow?: number;
  /** How many windows of baseline before the spike. */
  baselineWindows?: number;
  log?: (line: string) => void;
}

export interface RogueAgentResult {
  agentId: string;
  spikeStartedAt: number;
  revokedAt: number;
  refusedAt: number;
  refusal: { status: number; body: string };
  /** The SDK's lastEventDelayMs: the kill's event arriving at the SDK minus its revoked_at. */
  eventDelayMs: number;
  revokedBy: string;
  revokedReason: string;
  /** The score history, oldest first (it ends when the agent is revoked). */
  scores: TrustScore[];
  timeline: ActivityEvent[];
  requests: { baseline: number; spike: number };
}

const AUDIENCE = "https://orders.example.com";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runRogueAgent(o: RogueAgentOptions): Promise<RogueAgentResult> {
  const log = o.log ?? (() => {});
  const admin = createTransport(o.httpUrl, { protocol: "connect", apiKey: o.adminKey });
  const agents = createClient(AgentService, admin);
  const activity = createClient(ActivityService, admin);
  const policies = createClient(PolicyService, admin);

  // The operator's side: a resource server key for the orders API, and a policy.
  const rsKey = (await createClient(KeyService, admin).createApiKey({ name: "orders-api", role: Role.RESOURCE_SERVER, audiences: [AUDIENCE] })).secret;
  await policies.createPolicy({ policy: { name: "low-trust", kind: PolicyKind.TRUST_BELOW, threshold: 40 } }).catch((err: unknown) => {
    if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
  });
  const pub = new Uint8Array(generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32));
  const { agent } = await agents.registerAgent({
    name: "support-bot",
    publicKey: pub,
    allowedScopes: ["orders:read", "customers:read", "customers:export"],
    allowedAudiences: [AUDIENCE],
  });
  const agentId = agent!.agentId;
  const { token } = await createClient(TokenService, admin).issue({
    agentId,
    scopes: ["orders:read", "customers:read", "customers:export"],
    audiences: [AUDIENCE],
    ttl: durationFromMs(900_000),
  });
  log(`agent ${agentId}, token with orders:read customers:read customers:export; policy low-trust: revoke below 40`);

  // The resource server: the SDK under its own key, reporting usage four times a second.
  const verifier = createVerifier({ endpoint: o.grpcUrl, apiKey: rsKey, audience: AUDIENCE, reportUsage: { intervalMs: 250 } });
  await verifier.ready();
  const server = ordersApi(verifier);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const call = async (path: string) => {
    const res = await fetch(base + path, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: await res.text(), at: Date.now() };
  };

  try {
    // Baseline: orders only, at a steady rate.
    const baselinePerWindow = o.baselinePerWindow ?? 20;
    const spikePerWindow = o.spikePerWindow ?? 25 * baselinePerWindow;
    const baselineMs = (o.baselineWindows ?? 4) * o.windowMs;
    log(`baseline: ${baselinePerWindow} requests per ${o.windowMs / 1000}s window to /orders, for ${baselineMs / 1000}s`);
    let baselineCount = 0;
    const gap = o.windowMs / baselinePerWindow;
    const baselineEnd = Date.now() + baselineMs;
    while (Date.now() < baselineEnd) {
      const r = await call("/orders");
      if (r.status !== 200) throw new Error(`baseline request refused: ${r.status} ${r.body}`);
      baselineCount++;
      await sleep(gap);
    }
    await verifier.flushUsage();

    // The spike: 25x the rate, on customer scopes it has never used, until the SDK refuses.
    log(`spike: ${spikePerWindow} requests per window to /customers and /customers/export`);
    const spikeStartedAt = Date.now();
    const paths = ["/customers", "/customers/export", "/orders"];
    let spikeCount = 0;
    let refusal: { status: number; body: string; at: number } | undefined;
    const inFlight = new Set<Promise<void>>();
    const spikeGap = o.windowMs / spikePerWindow;
    let next = Date.now();
    while (!refusal && Date.now() - spikeStartedAt < 30 * o.windowMs) {
      const p = call(paths[spikeCount++ % paths.length]!).then((r) => {
        if (r.status === 401 && !refusal) refusal = r;
      });
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      next += spikeGap;
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      if (inFlight.size > 32) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (!refusal) throw new Error("the SDK never refused the agent");
    const eventDelayMs = verifier.metrics().lastEventDelayMs;
    const a = (await agents.getAgent({ agentId })).agent!;
    const revokedAt = a.revokedAt ? timestampDate(a.revokedAt).getTime() : NaN;
    log(`refused: ${refusal.status} ${refusal.body.trim()}`);

    // The trail: the summaries of the last buckets are logged once their bucket has closed.
    await verifier.flushUsage();
    let timeline: ActivityEvent[] = [];
    const deadline = Date.now() + 10 * o.bucketMs + 30_000;
    const since = timestampFromMs(spikeStartedAt - baselineMs - 2 * o.bucketMs);
    for (;;) {
      timeline = (await activity.getActivity({ agentId, since, pageSize: 5000 })).events;
      // Done once the refusals after the kill are in the trail too.
      if (timeline.some((e) => e.usage?.counts.some((c) => c.outcome.startsWith("inactive:")))) break;
      if (Date.now() > deadline) break;
      await sleep(250);
    }
    const scores = (await activity.listTrustScores({ agentId, pageSize: 1000 })).trustScores;
    return {
      agentId,
      spikeStartedAt,
      revokedAt,
      refusedAt: refusal.at,
      refusal: { status: refusal.status, body: refusal.body },
      eventDelayMs,
      revokedBy: a.revokedBy,
      revokedReason: a.revokedReason,
      scores,
      timeline,
      requests: { baseline: baselineCount, spike: spikeCount },
    };
  } finally {
    server.close();
    await verifier.close();
  }
}

/** The result for a person: the score's factors when the policy acted, the timings, the timeline. */
export function describeRogueAgent(r: RogueAgentResult): string {
  const last = r.scores.find((s) => s.score < 40) ?? r.scores.at(-1);
  const factors = last
    ? last.factors.map((f) => `  ${f.name.padEnd(16)} ${f.contribution >= 0 ? "+" : ""}${f.contribution.toFixed(1).padStart(6)}  ${f.detail}`).join("\n")
    : "";
  return [
    `requests: ${r.requests.baseline} at baseline, ${r.requests.spike} in the spike`,
    `trust score when it fell below the policy's threshold: ${last?.score ?? "?"}`,
    factors,
    `revoked by ${r.revokedBy}: ${r.revokedReason}`,
    `spike start -> revocation (revoked_at): ${r.revokedAt - r.spikeStartedAt} ms`,
    `revocation (revoked_at) -> the SDK refusing the agent's next request: ${r.refusedAt - r.revokedAt} ms (the kill's event reached the SDK ${r.eventDelayMs} ms after revoked_at)`,
    ``,
    `timeline (npx agentid agent activity ${r.agentId} --since 5m):`,
    formatTimeline(r.timeline),
  ].join("\n");
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const windowMs = Number(process.env.WINDOW_SECONDS ?? 2) * 1000;
  const r = await runRogueAgent({
    httpUrl: process.env.AGENTID_URL ?? "http://127.0.0.1:8080",
    grpcUrl: process.env.AGENTID_GRPC ?? "http://127.0.0.1:50051",
    adminKey: process.env.AGENTID_API_KEY ?? "",
    windowMs,
    bucketMs: Number(process.env.BUCKET_SECONDS ?? 1) * 1000,
    log: (l) => console.log(l),
  });
  console.log(describeRogueAgent(r));
  process.exit(0);
}
