// The resource-server SDK against a real server: cache, evictions, the introspection/event race,
// staleness modes, replica lists, middleware.
import { readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import {
  agentTokenInterceptor,
  createVerifier,
  kAgentToken,
  requireAgentToken,
  type Verifier,
  type VerifierOptions,
} from "../src/client/index.js";
import { newToken } from "../src/domain/ids.js";
import { publicKey, startHarness, type Harness } from "./support/harness.js";
import { startProxy } from "./support/proxy.js";

let h: Harness;
let endpoint: string;
beforeAll(async () => {
  h = await startHarness();
  endpoint = `http://${h.grpcAddress}`;
});
afterAll(() => h?.close());

const open: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of open.splice(0).reverse()) await f().catch(() => {});
});

async function verifier(o: Partial<VerifierOptions> = {}): Promise<Verifier> {
  const v = createVerifier({ endpoint, apiKey: h.adminKey, backoff: { initialMs: 20, maxMs: 200 }, ...o });
  open.push(() => v.close());
  return v;
}

async function agentWithTokens(n: number, opts: { scopes?: string[]; audiences?: string[]; ttlMs?: number } = {}) {
  const { agent } = await h.grpc.agents.registerAgent({
    name: "sdk-test",
    publicKey: publicKey(),
    allowedScopes: opts.scopes ?? ["orders:read"],
    allowedAudiences: opts.audiences ?? ["https://api.example.com"],
  });
  const tokens = await Promise.all(
    Array.from({ length: n }, () =>
      h.grpc.tokens.issue({
        agentId: agent!.agentId,
        scopes: opts.scopes ?? ["orders:read"],
        audiences: opts.audiences ?? ["https://api.example.com"],
        ttl: durationFromMs(opts.ttlMs ?? 600_000),
      }),
    ),
  );
  return { agentId: agent!.agentId, tokens };
}

/** Liveness only: waits until the verifier's feed has applied `revision`. */
async function applied(v: Verifier, revision: bigint): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (v.metrics().feedRevision < revision) {
    if (Date.now() > deadline) throw new Error(`feed never reached ${revision} (at ${v.metrics().feedRevision})`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("verify", () => {
  it("rejects garbage by checksum without a network call", async () => {
    const v = await verifier();
    const real = newToken();
    const typo = real.slice(0, 10) + (real[10] === "a" ? "b" : "a") + real.slice(11);
    for (const t of ["", "hello", "Bearer x", typo, real.toUpperCase()]) {
      expect(await v.verify(t)).toEqual({ active: false, reason: "malformed" });
    }
    expect(v.metrics().networkIntrospections).toBe(0);
  });

  it("answers from the cache after one introspection, checking scope and audience locally", async () => {
    const v = await verifier({ audience: "https://api.example.com" });
    await v.ready();
    const { agentId, tokens } = await agentWithTokens(1);
    const first = await v.verify(tokens[0]!.token, { scope: "orders:read" });
    expect(first).toMatchObject({ active: true, agentId, tokenId: tokens[0]!.tokenId, source: "network" });
    const second = await v.verify(tokens[0]!.token, { scope: "orders:read" });
    expect(second).toMatchObject({ active: true, source: "cache" });
    expect(await v.verify(tokens[0]!.token, { scope: "orders:write" })).toEqual({ active: false, reason: "scope_not_granted" });
    expect(v.metrics()).toMatchObject({ cacheHits: 2, cacheMisses: 1, networkIntrospections: 1 });

    const elsewhere = await verifier({ audience: "https://other.example.com" });
    await elsewhere.ready();
    expect(await elsewhere.verify(tokens[0]!.token)).toEqual({ active: false, reason: "audience_mismatch" });
    // Unknown tokens are asked about, not cached.
    expect(await v.verify(newToken())).toEqual({ active: false, reason: "unknown_token" });
  });

  it("sends the api key as a bearer credential on every call", async () => {
    const seen = new Set<string>();
    const spy: Interceptor = (next) => (req) => {
      seen.add(`${req.method.name} ${req.header.get("authorization")}`);
      return next(req);
    };
    const v = await verifier({ interceptors: [spy] });
    await v.ready();
    await v.verify(newToken());
    expect(seen).toEqual(new Set([`WatchRevocations Bearer ${h.adminKey}`, `Introspect Bearer ${h.adminKey}`]));
  });

  it("bounds the cache", async () => {
    const v = await verifier({ cacheSize: 3 });
    await v.ready();
    const { tokens } = await agentWithTokens(5);
    for (const t of tokens) expect((await v.verify(t.token)).active).toBe(true);
    expect(v.metrics().cacheSize).toBe(3);
  });

  it("works against a replica list with a dead replica in it", async () => {
    const v = await verifier({ endpoints: ["http://127.0.0.1:1", endpoint] });
    await v.ready();
    const { tokens } = await agentWithTokens(1);
    for (let i = 0; i < 3; i++) expect((await v.verify(tokens[0]!.token)).active).toBe(true);
  });
});

describe("evictions", () => {
  it("evicts by token id and by agent id as events arrive", async () => {
    const v = await verifier();
    await v.ready();
    const { agentId, tokens } = await agentWithTokens(3);
    for (const t of tokens) expect(await v.verify(t.token)).toMatchObject({ active: true });
    for (const t of tokens) expect(await v.verify(t.token)).toMatchObject({ active: true, source: "cache" });

    const one = await h.grpc.tokens.revoke({ target: { case: "tokenId", value: tokens[0]!.tokenId }, reason: "leaked" });
    await applied(v, one.revision);
    expect(await v.verify(tokens[0]!.token)).toEqual({ active: false, reason: "revoked" });
    expect(await v.verify(tokens[1]!.token)).toMatchObject({ active: true, source: "cache" });

    const all = await h.grpc.tokens.revoke({ target: { case: "agentId", value: agentId }, reason: "kill switch" });
    await applied(v, all.revision);
    for (const t of tokens.slice(1)) expect(await v.verify(t.token)).toEqual({ active: false, reason: "agent_revoked" });
    expect(v.metrics().cacheSize).toBe(0);
  });
});

describe("the introspection/event race", () => {
  /** Holds Introspect answers until released, to order them after a feed event on purpose. */
  function holdingInterceptor() {
    let held: { active: boolean; revision: bigint } | undefined;
    let arrived: () => void = () => {};
    let release: () => void = () => {};
    let armed = false;
    const interceptor: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (armed && req.method.name === "Introspect" && !res.stream) {
        armed = false;
        const m = res.message as unknown as { active: boolean; revision: bigint };
        held = { active: m.active, revision: m.revision };
        const gate = new Promise<void>((r) => (release = r));
        arrived();
        await gate;
      }
      return res;
    };
    return {
      interceptor,
      arm(): Promise<void> {
        armed = true;
        return new Promise((r) => (arrived = r));
      },
      release: () => release(),
      held: () => held,
    };
  }

  for (const target of ["tokenId", "agentId"] as const) {
    it(`never caches an answer read before a ${target} eviction that arrived first`, async () => {
      const hold = holdingInterceptor();
      const v = await verifier({ interceptors: [hold.interceptor] });
      await v.ready();
      const { agentId, tokens } = await agentWithTokens(1);
      const t = tokens[0]!;

      // 1. The answer is read (active, at revision R) and held on its way back.
      const arrived = hold.arm();
      const pending = v.verify(t.token);
      await arrived;
      // 2. The revocation commits and its event (revision > R) reaches the verifier first.
      const revoked = await h.grpc.tokens.revoke({
        target: target === "tokenId" ? { case: "tokenId", value: t.tokenId } : { case: "agentId", value: agentId },
        reason: "race",
      });
      await applied(v, revoked.revision);
      expect(hold.held()).toEqual({ active: true, revision: revoked.revision - 1n });
      // 3. Then the stale answer arrives: it must neither be believed nor cached.
      hold.release();
      expect(await pending).toEqual({ active: false, reason: target === "tokenId" ? "revoked" : "agent_revoked" });
      expect(await v.verify(t.token)).toMatchObject({ active: false });
      expect(v.metrics().cacheSize).toBe(0);
    });
  }

  it("remembers killed agents only while an answer read before the kill may still arrive", async () => {
    const hold = holdingInterceptor();
    const v = await verifier({ interceptors: [hold.interceptor] });
    await v.ready();
    const held = await agentWithTokens(1);
    const others = await Promise.all(Array.from({ length: 50 }, () => agentWithTokens(0)));
    // Earlier tests' revoked tokens are remembered until they expire; earlier kills go at the next bookmark.
    await new Promise((r) => setTimeout(r, 1100));
    const tokenMarks = v.metrics().revocationMarks;
    const arrived = hold.arm();
    const pending = v.verify(held.tokens[0]!.token);
    await arrived;
    let last = 0n;
    for (const a of [held, ...others]) last = (await h.grpc.tokens.revoke({ target: { case: "agentId", value: a.agentId }, reason: "fleet" })).revision;
    await applied(v, last);
    // Bookmarks come every second; while the answer is held, every mark stays.
    await new Promise((r) => setTimeout(r, 2200));
    expect(v.metrics().revocationMarks).toBe(tokenMarks + 51);
    hold.release();
    expect(await pending).toEqual({ active: false, reason: "agent_revoked" });
    // Nothing read before the kills is on its way any more: the marks go, the refusals stay.
    await until(() => v.metrics().revocationMarks === tokenMarks, "the agents' marks are forgotten");
    expect(await v.verify(held.tokens[0]!.token)).toEqual({ active: false, reason: "agent_revoked" });
  });

  it("evicts an answer cached just before the event (the other order)", async () => {
    const v = await verifier();
    await v.ready();
    const { tokens } = await agentWithTokens(1);
    expect(await v.verify(tokens[0]!.token)).toMatchObject({ active: true, source: "network" });
    const r = await h.grpc.tokens.revoke({ target: { case: "tokenId", value: tokens[0]!.tokenId }, reason: "race" });
    await applied(v, r.revision);
    expect(await v.verify(tokens[0]!.token)).toEqual({ active: false, reason: "revoked" });
  });

  it("never answers active once the revocation is applied, under random interleavings", async () => {
    const v = await verifier();
    await v.ready();
    for (let round = 0; round < 15; round++) {
      const { agentId, tokens } = await agentWithTokens(2);
      let stop = false;
      let revokedAt: bigint | undefined;
      const violations: string[] = [];
      // Verifiers hammer the tokens while the revocation commits and its event arrives.
      const agentRound = round % 2 === 1;
      const hammer = Promise.all(
        tokens.map(async (t, i) => {
          const target = agentRound || i === 0;
          while (!stop) {
            const appliedBefore = revokedAt !== undefined && v.metrics().feedRevision >= revokedAt;
            const r = await v.verify(t.token);
            if (target && appliedBefore && r.active) violations.push(`round ${round}: ${t.tokenId} active after eviction`);
            // Cache hits resolve in microtasks; let timers and sockets run.
            await new Promise((r) => setImmediate(r));
          }
        }),
      );
      await new Promise((r) => setTimeout(r, Math.random() * 20));
      const res = await h.grpc.tokens.revoke({
        target: agentRound ? { case: "agentId", value: agentId } : { case: "tokenId", value: tokens[0]!.tokenId },
        reason: "random race",
      });
      revokedAt = res.revision;
      await applied(v, res.revision);
      await new Promise((r) => setTimeout(r, 20));
      stop = true;
      await hammer;
      expect(violations).toEqual([]);
      expect((await v.verify(tokens[0]!.token)).active).toBe(false);
    }
  });
});

describe("staleness", () => {
  async function cutFeedSetup(o: Partial<VerifierOptions>) {
    const proxy = await startProxy(Number(h.grpcAddress.split(":")[1]));
    open.push(() => proxy.close());
    // The feed goes through the proxy; introspection goes straight to the server.
    const v = await verifier({ feedEndpoints: [proxy.url], staleAfterMs: 1500, ...o });
    await v.ready();
    const { tokens } = await agentWithTokens(1);
    expect(await v.verify(tokens[0]!.token)).toMatchObject({ active: true });
    proxy.freeze();
    await until(() => v.metrics().stale, "the verifier notices the silent feed");
    // Revoked while the feed is silent: the verifier cannot have heard of it.
    const r = await h.grpc.tokens.revoke({ target: { case: "tokenId", value: tokens[0]!.tokenId }, reason: "while cut" });
    return { proxy, v, token: tokens[0]!.token, revision: r.revision };
  }

  it("strict mode fails closed once the feed is silent past staleAfter, and recovers", async () => {
    const { proxy, v, token, revision } = await cutFeedSetup({ mode: "strict", whenStale: "deny" });
    const { tokens: fresh } = await agentWithTokens(1);
    expect(await v.verify(token)).toEqual({ active: false, reason: "stale" });
    expect(await v.verify(fresh[0]!.token)).toEqual({ active: false, reason: "stale" });
    proxy.thaw();
    await applied(v, revision);
    await until(() => !v.metrics().stale, "fresh again");
    expect(await v.verify(token)).toEqual({ active: false, reason: "revoked" });
    expect(await v.verify(fresh[0]!.token)).toMatchObject({ active: true });
  });

  it("strict mode can fall back to network introspection instead", async () => {
    const { v, token } = await cutFeedSetup({ mode: "strict", whenStale: "introspect" });
    const misses = v.metrics().cacheMisses;
    expect(await v.verify(token)).toEqual({ active: false, reason: "revoked" });
    expect(v.metrics().cacheMisses).toBe(misses + 1);
  });

  it("best_effort mode keeps the last known state while the feed is silent", async () => {
    const { proxy, v, token, revision } = await cutFeedSetup({ mode: "best_effort" });
    // The documented trade-off: the revocation is unknown here until the feed returns.
    expect(await v.verify(token)).toMatchObject({ active: true, source: "cache" });
    proxy.thaw();
    await applied(v, revision);
    expect(await v.verify(token)).toEqual({ active: false, reason: "revoked" });
  });
});

describe("middleware", () => {
  it("guards a node:http / Express handler", async () => {
    const v = await verifier();
    await v.ready();
    const guard = requireAgentToken(v, { scope: "orders:read" });
    const server = http.createServer((req, res) =>
      guard(req, res, () => res.end(`hello ${(req as { agentid?: { agentId: string } }).agentid?.agentId}`)),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    open.push(() => new Promise((r) => server.close(r)));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/orders`;
    const { agentId, tokens } = await agentWithTokens(1);
    const call = (token?: string) => fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });

    expect((await call()).status).toBe(401);
    const ok = await call(tokens[0]!.token);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe(`hello ${agentId}`);
    const r = await h.grpc.tokens.revoke({ target: { case: "agentId", value: agentId }, reason: "kill switch" });
    await applied(v, r.revision);
    const refused = await call(tokens[0]!.token);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({ error: "invalid_token", reason: "agent_revoked" });

    const { tokens: narrow } = await agentWithTokens(1, { scopes: ["other"] });
    expect((await call(narrow[0]!.token)).status).toBe(403);
  });
});

describe("connect interceptor", () => {
  it("guards a Connect resource server and hands the verified token to handlers", async () => {
    const v = await verifier();
    await v.ready();
    // Any Connect service stands in for the resource server's own.
    const server = http.createServer(
      connectNodeAdapter({
        routes: (r) =>
          r.service(AgentService, {
            getAgent: (_req, ctx) => ({ agent: { agentId: ctx.values.get(kAgentToken)?.agentId ?? "none" } }),
          }),
        interceptors: [agentTokenInterceptor(v, { scope: "orders:read" })],
      }),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    open.push(() => new Promise((r) => server.close(r)));
    const rs = createClient(
      AgentService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}`, httpVersion: "1.1" }),
    );
    const { agentId, tokens } = await agentWithTokens(1);
    const call = async (token?: string) => {
      try {
        return (await rs.getAgent({}, { headers: token ? { authorization: `Bearer ${token}` } : {} })).agent?.agentId;
      } catch (err) {
        return ConnectError.from(err).code;
      }
    };
    expect(await call()).toBe(Code.Unauthenticated);
    expect(await call(tokens[0]!.token)).toBe(agentId);
    const { tokens: narrow } = await agentWithTokens(1, { scopes: ["other"] });
    expect(await call(narrow[0]!.token)).toBe(Code.PermissionDenied);
    const r = await h.grpc.tokens.revoke({ target: { case: "tokenId", value: tokens[0]!.tokenId }, reason: "x" });
    await applied(v, r.revision);
    expect(await call(tokens[0]!.token)).toBe(Code.Unauthenticated);
  });
});

// agentid/mcp (mcp.ts) also imports the MCP SDK, the MCP server's own copy.
it("the SDK imports nothing that needs a database", () => {
  const dir = join(import.meta.dirname, "../src/client");
  for (const f of readdirSync(dir)) {
    const src = readFileSync(join(dir, f), "utf8");
    for (const [, spec] of src.matchAll(/from "([^"]+)"/g)) {
      expect({ file: f, spec }).toSatisfy(
        ({ file, spec: s }: { file: string; spec: string }) =>
          (file === "mcp.ts" && s.startsWith("@modelcontextprotocol/sdk/")) ||
          s.startsWith("./") || s.startsWith("node:") || s.startsWith("@connectrpc/") || s.startsWith("@bufbuild/") ||
          s.startsWith("../../gen/") || s === "../domain/ids.js" || s === "../domain/proof.js",
      );
    }
  }
});
