// Prometheus /metrics: who may read it, and what it says, parsed as the text exposition format.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { bearer, clientsFor, publicKey, startHarness, type Harness } from "./support/harness.js";
import { parseExposition } from "./support/prom.js";

let h: Harness;
const metricsKey = newSecret(API_KEY_PREFIX);
let rsKey: string;

beforeAll(async () => {
  h = await startHarness({ config: { metricsKey } });
  const keys = createClient(KeyService, createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors: [bearer(h.adminKey)] }));
  rsKey = (await keys.createApiKey({ name: "rs", role: Role.RESOURCE_SERVER, audiences: ["orders"] })).secret;
});
afterAll(() => h?.close());

const get = (key?: string) =>
  fetch(`http://127.0.0.1:${h.server.httpPort}/metrics`, { headers: key ? { authorization: `Bearer ${key}` } : {} });

async function scrape() {
  const res = await get(metricsKey);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

describe("/metrics", () => {
  it("is for admin keys and the dedicated AGENTID_METRICS_KEY only", async () => {
    expect((await get()).status).toBe(401);
    expect((await get("ak_garbage")).status).toBe(401);
    expect((await get(rsKey)).status).toBe(403);
    expect((await get(h.adminKey)).status).toBe(200);
    expect((await get(metricsKey)).status).toBe(200);
    // The metrics key opens nothing else.
    const err = await clientsFor(createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors: [bearer(metricsKey)] }))
      .agents.listAgents({})
      .catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
  });

  it("counts RPCs by transport, method and code, introspections by result and reason, issuances and revocations", async () => {
    // A watcher, so that the feed's delay from commit to write has streams to measure.
    const ac = new AbortController();
    const seen: bigint[] = [];
    const watching = (async () => {
      for await (const res of h.grpc.revocations.watchRevocations({}, { signal: ac.signal })) {
        for (const e of res.events) seen.push(e.revision);
      }
    })().catch(() => {});
    const agentId = (await h.grpc.agents.registerAgent({ name: "m", publicKey: publicKey(), allowedScopes: ["read"], allowedAudiences: ["orders"] })).agent!.agentId;
    const t = await h.grpc.tokens.issue({ agentId, scopes: ["read"], audiences: ["orders"] });
    await h.grpc.tokens.introspect({ token: t.token });
    await h.connect.tokens.introspect({ token: t.token, requiredScope: "write" });
    await h.grpc.tokens.issue({ agentId: "not-an-id", scopes: [] }).catch(() => {});
    await h.connect.tokens.issue({ agentId: "not-an-id", scopes: [] }).catch(() => {});
    await h.grpc.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "m" });
    await h.grpc.tokens.introspect({ token: t.token });
    await h.grpc.tokens.revoke({ target: { case: "agentId", value: agentId }, reason: "m" });

    const m = await scrape();
    expect(m.types.get("agentid_rpc_requests_total")).toBe("counter");
    expect(m.types.get("agentid_rpc_duration_seconds")).toBe("histogram");
    const rpc = (transport: string, method: string, code: string) =>
      m.value("agentid_rpc_requests_total", { transport, service: "agentid.v1.TokenService", method, code });
    expect(rpc("grpc", "Introspect", "OK")).toBeGreaterThanOrEqual(2);
    expect(rpc("connect", "Introspect", "OK")).toBeGreaterThanOrEqual(1);
    expect(rpc("grpc", "Issue", "INVALID_ARGUMENT")).toBe(1);
    expect(rpc("connect", "Issue", "INVALID_ARGUMENT")).toBe(1);
    expect(m.value("agentid_rpc_duration_seconds_count", { transport: "grpc", method: "Introspect", code: "OK" })).toBeGreaterThanOrEqual(2);
    expect(m.value("agentid_rpc_duration_seconds_bucket", { transport: "grpc", method: "Introspect", code: "OK", le: "+Inf" })).toBeGreaterThanOrEqual(2);

    expect(m.value("agentid_introspections_total", { surface: "rpc", result: "active" })).toBeGreaterThanOrEqual(1);
    expect(m.value("agentid_introspections_total", { surface: "rpc", result: "inactive", reason: "scope_not_granted" })).toBe(1);
    expect(m.value("agentid_introspections_total", { surface: "rpc", result: "inactive", reason: "revoked" })).toBe(1);
    expect(m.value("agentid_tokens_issued_total", { kind: "issuer" })).toBe(1);

    // Revocations are counted from the transparency log, as the sequencer numbers them.
    await expect
      .poll(async () => {
        const now = await scrape();
        return [now.value("agentid_revocations_total", { kind: "token", actor: "key" }), now.value("agentid_revocations_total", { kind: "agent", actor: "key" })];
      }, { timeout: 5000 })
      .toEqual([1, 1]);
    // Counted once, however often it is scraped.
    expect((await scrape()).value("agentid_revocations_total", { kind: "token", actor: "key" })).toBe(1);
    await expect.poll(() => seen.length, { timeout: 5000 }).toBe(2);
    expect((await scrape()).value("agentid_feed_event_delay_seconds_count")).toBe(2);
    ac.abort();
    await watching;
  });

  it("reports the feed, sequencer, audit log, database pool and event loop", async () => {
    // One open watcher.
    const ac = new AbortController();
    const stream = h.grpc.revocations.watchRevocations({}, { signal: ac.signal })[Symbol.asyncIterator]();
    await stream.next();
    const m = await scrape();
    expect(m.value("agentid_feed_watchers")).toBe(1);
    // The tailer reads the log at start and on every tick.
    expect(m.types.get("agentid_feed_log_read_seconds")).toBe("histogram");
    expect(m.value("agentid_feed_log_read_seconds_count", { reader: "tailer" })).toBeGreaterThan(0);
    ac.abort();
    await stream.next().catch(() => {});
    expect(m.value("agentid_sequencer_pending", { log: "revocations" })).toBe(0);
    expect(m.value("agentid_sequencer_pending", { log: "audit" })).toBeGreaterThanOrEqual(0);
    expect(m.value("agentid_audit_log_size")).toBeGreaterThan(0);
    expect(m.value("agentid_audit_checkpoint_age_seconds")).toBeGreaterThanOrEqual(0);
    expect(m.value("agentid_database_up")).toBe(1);
    expect(m.value("agentid_db_pool_connections", { state: "in_use" })).toBeGreaterThanOrEqual(0);
    expect(m.value("agentid_db_pool_connections", { state: "waiting" })).toBeGreaterThanOrEqual(0);
    expect(m.value("agentid_event_loop_delay_seconds", { quantile: "0.99" })).toBeGreaterThan(0);
  });

  it("keeps label values bounded: no token, agent or key ids", async () => {
    const m = await scrape();
    for (const s of m.samples) {
      for (const v of Object.values(s.labels)) expect(v).not.toMatch(/(agt|tok|key|at|ak)_[0-9A-Za-z]{6,}/);
    }
    expect(new Set(m.samples.map((s) => s.name)).size).toBeLessThan(200);
  });

  it("is absent with AGENTID_METRICS=off", async () => {
    const off = await startHarness({ config: { metrics: false } });
    try {
      const res = await fetch(`http://127.0.0.1:${off.server.httpPort}/metrics`, { headers: { authorization: `Bearer ${off.adminKey}` } });
      expect(res.status).toBe(404);
    } finally {
      await off.close();
    }
  });
});
