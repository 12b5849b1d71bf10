import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { AgentStatus } from "../gen/agentid/v1/agent_pb.js";
import { InactiveReason } from "../gen/agentid/v1/token_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { publicKey, startHarness, type Clients, type Harness } from "./support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe.each(["grpc", "connect"] as const)("every RPC over %s", (transport) => {
  let c: Clients;
  beforeAll(() => {
    c = h[transport];
  });

  it("registers, gets and lists agents with paging and a status filter", async () => {
    const key = publicKey();
    const { agent } = await c.agents.registerAgent({ name: "billing-bot", publicKey: key, labels: { team: "payments" } });
    expect(agent?.agentId).toMatch(/^agt_[0-9A-Za-z]{22}$/);
    expect(agent?.status).toBe(AgentStatus.ACTIVE);
    expect(agent?.publicKey).toEqual(key);
    expect(agent?.labels).toEqual({ team: "payments" });

    const got = await c.agents.getAgent({ agentId: agent!.agentId });
    expect(got.agent?.name).toBe("billing-bot");

    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await c.agents.registerAgent({ name: `pager-${i}`, publicKey: publicKey() })).agent!.agentId);
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await c.agents.listAgents({ pageSize: 2, pageToken });
      expect(page.agents.length).toBeLessThanOrEqual(2);
      seen.push(...page.agents.map((a) => a.agentId));
      pageToken = page.nextPageToken;
    } while (pageToken);
    // Newest first, every agent exactly once.
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.slice(0, 5)).toEqual([...ids].reverse());
    expect(seen).toContain(agent!.agentId);

    await c.tokens.revoke({ target: { case: "agentId", value: ids[0]! }, reason: "test" });
    const revoked = await c.agents.listAgents({ status: AgentStatus.REVOKED, pageSize: 1000 });
    expect(revoked.agents.map((a) => a.agentId)).toContain(ids[0]);
    expect(revoked.agents.every((a) => a.status === AgentStatus.REVOKED)).toBe(true);
    const active = await c.agents.listAgents({ status: AgentStatus.ACTIVE, pageSize: 1000 });
    expect(active.agents.map((a) => a.agentId)).not.toContain(ids[0]);
  });

  it("issues a token and introspects it from live state", async () => {
    const { agent } = await c.agents.registerAgent({ name: "reader", publicKey: publicKey(), allowedScopes: ["orders:read", "orders:write"], allowedAudiences: ["https://api.example.com"] });
    const issued = await c.tokens.issue({
      agentId: agent!.agentId,
      scopes: ["orders:read", "orders:write"],
      audiences: ["https://api.example.com"],
      ttl: durationFromMs(120_000),
    });
    expect(issued.token).toMatch(/^at_[0-9A-Za-z]{49}$/);
    expect(issued.tokenId).toMatch(/^tok_/);
    const ttl = timestampDate(issued.expiresAt!).getTime() - Date.now();
    expect(ttl).toBeGreaterThan(100_000);
    expect(ttl).toBeLessThanOrEqual(121_000);

    const r = await c.tokens.introspect({ token: issued.token });
    expect(r.active).toBe(true);
    expect(r.inactiveReason).toBe(InactiveReason.UNSPECIFIED);
    expect(r.tokenId).toBe(issued.tokenId);
    expect(r.agentId).toBe(agent!.agentId);
    expect(r.scopes).toEqual(["orders:read", "orders:write"]);
    expect(r.audiences).toEqual(["https://api.example.com"]);
    expect(timestampDate(r.expiresAt!)).toEqual(timestampDate(issued.expiresAt!));

    expect((await c.tokens.introspect({ token: issued.token, requiredScope: "orders:read" })).active).toBe(true);
    const denied = await c.tokens.introspect({ token: issued.token, requiredScope: "admin" });
    expect(denied.active).toBe(false);
    expect(denied.inactiveReason).toBe(InactiveReason.SCOPE_NOT_GRANTED);
  });

  it("uses the default TTL when none is given", async () => {
    const { agent } = await c.agents.registerAgent({ name: "default-ttl", publicKey: publicKey() });
    const issued = await c.tokens.issue({ agentId: agent!.agentId });
    const ttl = timestampDate(issued.expiresAt!).getTime() - Date.now();
    expect(Math.abs(ttl - h.ctx.config.tokenDefaultTtlMs)).toBeLessThan(5000);
  });

  it("answers malformed, foreign and unknown tokens as inactive", async () => {
    const garbage = await c.tokens.introspect({ token: "not-a-token" });
    expect(garbage).toMatchObject({ active: false, inactiveReason: InactiveReason.MALFORMED, revision: 0n });
    const { agent } = await c.agents.registerAgent({ name: "x", publicKey: publicKey() });
    const { token } = await c.tokens.issue({ agentId: agent!.agentId });
    // One changed character breaks the checksum.
    const typo = token.slice(0, 10) + (token[10] === "A" ? "B" : "A") + token.slice(11);
    expect((await c.tokens.introspect({ token: typo })).inactiveReason).toBe(InactiveReason.MALFORMED);
    const { newToken } = await import("../src/domain/ids.js");
    const unknown = await c.tokens.introspect({ token: newToken() });
    expect(unknown).toMatchObject({ active: false, inactiveReason: InactiveReason.UNKNOWN_TOKEN });
    expect(unknown.tokenId).toBe("");
  });

  it("expires tokens at their TTL", async () => {
    const { agent } = await c.agents.registerAgent({ name: "short", publicKey: publicKey() });
    const { token } = await c.tokens.issue({ agentId: agent!.agentId, ttl: durationFromMs(1000) });
    expect((await c.tokens.introspect({ token })).active).toBe(true);
    await new Promise((r) => setTimeout(r, 1200));
    expect((await c.tokens.introspect({ token })).inactiveReason).toBe(InactiveReason.EXPIRED);
  });

  it("revokes by token, by token id and by agent, idempotently", async () => {
    const { agent } = await c.agents.registerAgent({ name: "victim", publicKey: publicKey() });
    const id = agent!.agentId;
    const [a, b, d] = await Promise.all([1, 2, 3].map(() => c.tokens.issue({ agentId: id })));

    const r1 = await c.tokens.revoke({ target: { case: "token", value: a!.token }, reason: "leaked" });
    expect(r1.tokensRevoked).toBe(1n);
    const again = await c.tokens.revoke({ target: { case: "token", value: a!.token }, reason: "leaked again" });
    expect(again).toMatchObject({ revision: r1.revision, tokensRevoked: 0n });
    const ia = await c.tokens.introspect({ token: a!.token });
    expect(ia.inactiveReason).toBe(InactiveReason.REVOKED);
    expect(ia.revision).toBeGreaterThanOrEqual(r1.revision);

    const r2 = await c.tokens.revoke({ target: { case: "tokenId", value: b!.tokenId }, reason: "rotated" });
    expect(r2.revision).toBeGreaterThan(r1.revision);
    expect((await c.tokens.introspect({ token: b!.token })).inactiveReason).toBe(InactiveReason.REVOKED);
    expect((await c.tokens.introspect({ token: d!.token })).active).toBe(true);

    const r3 = await c.tokens.revoke({ target: { case: "agentId", value: id }, reason: "rogue" });
    expect(r3.tokensRevoked).toBe(1n);
    expect((await c.tokens.introspect({ token: d!.token })).inactiveReason).toBe(InactiveReason.AGENT_REVOKED);
    expect(await c.tokens.revoke({ target: { case: "agentId", value: id }, reason: "again" })).toMatchObject({
      revision: r3.revision,
      tokensRevoked: 0n,
    });
    // A token of a revoked agent: nothing left to revoke, the agent's revision answers.
    expect((await c.tokens.revoke({ target: { case: "tokenId", value: d!.tokenId }, reason: "x" })).revision).toBe(r3.revision);

    const after = await c.agents.getAgent({ agentId: id });
    expect(after.agent).toMatchObject({ status: AgentStatus.REVOKED, revokedReason: "rogue", revokedRevision: r3.revision });
    expect(await codeOf(c.tokens.issue({ agentId: id }))).toBe(Code.FailedPrecondition);
  });

  it("revoking one agent leaves other agents untouched", async () => {
    const agents = await Promise.all(
      Array.from({ length: 5 }, (_, i) => c.agents.registerAgent({ name: `fleet-${i}`, publicKey: publicKey() })),
    );
    const tokens = await Promise.all(agents.map((a) => c.tokens.issue({ agentId: a.agent!.agentId })));
    await c.tokens.revoke({ target: { case: "agentId", value: agents[2]!.agent!.agentId }, reason: "kill" });
    const answers = await Promise.all(tokens.map((t) => c.tokens.introspect({ token: t.token })));
    expect(answers.map((a) => a.active)).toEqual([true, true, false, true, true]);
  });

  it("answers many concurrent introspections each with its own token's state", async () => {
    const { agent } = await c.agents.registerAgent({ name: "batch", publicKey: publicKey() });
    const issued = await Promise.all(Array.from({ length: 30 }, () => c.tokens.issue({ agentId: agent!.agentId })));
    await Promise.all(issued.filter((_, i) => i % 3 === 0).map((t) => c.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "r" })));
    const { newToken } = await import("../src/domain/ids.js");
    const asks = [...issued.map((t, i) => ({ token: t.token, want: i % 3 === 0 ? InactiveReason.REVOKED : InactiveReason.UNSPECIFIED, id: t.tokenId }))];
    for (let i = 0; i < 10; i++) asks.push({ token: newToken(), want: InactiveReason.UNKNOWN_TOKEN, id: "" });
    const all = [...asks, ...asks, ...asks];
    const answers = await Promise.all(all.map((a) => c.tokens.introspect({ token: a.token })));
    answers.forEach((r, i) => {
      expect(r.inactiveReason).toBe(all[i]!.want);
      if (r.active) expect(r.tokenId).toBe(all[i]!.id);
    });
  });

  it("answers NOT_FOUND for unknown ids", async () => {
    const { newAgentId, newTokenId, newToken } = await import("../src/domain/ids.js");
    expect(await codeOf(c.agents.getAgent({ agentId: newAgentId() }))).toBe(Code.NotFound);
    expect(await codeOf(c.tokens.issue({ agentId: newAgentId() }))).toBe(Code.NotFound);
    expect(await codeOf(c.tokens.revoke({ target: { case: "agentId", value: newAgentId() }, reason: "r" }))).toBe(Code.NotFound);
    expect(await codeOf(c.tokens.revoke({ target: { case: "tokenId", value: newTokenId() }, reason: "r" }))).toBe(Code.NotFound);
    expect(await codeOf(c.tokens.revoke({ target: { case: "token", value: newToken() }, reason: "r" }))).toBe(Code.NotFound);
  });
});

describe("the HTTP port", () => {
  it("serves Connect over cleartext HTTP/2 and HTTP/1.1, and gRPC-Web, on one port", async () => {
    const { createConnectTransport, createGrpcWebTransport } = await import("@connectrpc/connect-node");
    const { clientsFor, bearer } = await import("./support/harness.js");
    const baseUrl = `http://127.0.0.1:${h.server.httpPort}`;
    const interceptors = [bearer(h.adminKey)];
    for (const transport of [
      createConnectTransport({ baseUrl, httpVersion: "2", interceptors }),
      createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors }),
      createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }),
      createGrpcWebTransport({ baseUrl, httpVersion: "2", interceptors }),
    ]) {
      const c = clientsFor(transport);
      const { agent } = await c.agents.registerAgent({ name: "h2", publicKey: publicKey() });
      expect((await c.agents.getAgent({ agentId: agent!.agentId })).agent?.name).toBe("h2");
    }
  });
});
