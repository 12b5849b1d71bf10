import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { AgentStatus } from "../gen/agentid/v1/agent_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { ActivityKind, ActivityService } from "../gen/agentid/v1/activity_pb.js";
import { createConnectTransport } from "@connectrpc/connect-node";
import { bearer, publicKey, startHarness, type Harness } from "./support/harness.js";

// What the console reads beyond the original API: search and label filters on ListAgents, live
// token counts, last activity and the latest trust score on agents, and GetCurrentPrincipal.

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

const keysWith = (key: string) =>
  createClient(KeyService, createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors: [bearer(key)] }));

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("ListAgents for the console", () => {
  it("searches names and ids, filters by labels, and pages through the matches", async () => {
    const tag = `s${Math.random().toString(36).slice(2, 8)}`;
    const made = [];
    for (let i = 0; i < 7; i++) {
      const { agent } = await h.connect.agents.registerAgent({
        name: `${tag}-bot-${i}`,
        publicKey: publicKey(),
        labels: { team: i % 2 ? "payments" : "search", tag },
      });
      made.push(agent!);
    }
    const names = async (req: Parameters<typeof h.connect.agents.listAgents>[0]) => (await h.connect.agents.listAgents(req)).agents.map((a) => a.name);
    expect(await names({ query: `${tag}-BOT` })).toHaveLength(7); // case-insensitive
    expect(await names({ query: made[3]!.agentId })).toEqual([`${tag}-bot-3`]);
    expect(await names({ query: `${tag}%` })).toEqual([]); // LIKE wildcards are literal
    expect(await names({ labels: { tag, team: "payments" } })).toEqual([`${tag}-bot-5`, `${tag}-bot-3`, `${tag}-bot-1`]);

    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await h.connect.agents.listAgents({ query: tag, labels: { team: "search" }, pageSize: 2, pageToken });
      seen.push(...page.agents.map((a) => a.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([6, 4, 2, 0].map((i) => `${tag}-bot-${i}`));
  });

  it("names the field of a bad filter", async () => {
    const err = await h.connect.agents.listAgents({ query: "x".repeat(129) }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.InvalidArgument });
    expect((err as ConnectError).rawMessage).toContain("query");
    const bad = await h.connect.agents.listAgents({ labels: { "bad key!": "x" } }).catch((e: unknown) => ConnectError.from(e));
    expect((bad as ConnectError).rawMessage).toContain("labels");
  });

  it("reports live tokens, last activity and the latest trust score, and no live tokens once revoked", async () => {
    const { agent } = await h.connect.agents.registerAgent({ name: "counted", publicKey: publicKey() });
    const agentId = agent!.agentId;
    expect(agent!.liveTokenCount).toBe(0n);
    const first = (await h.connect.agents.getAgent({ agentId })).agent!;
    expect(first.trustScore).toBeUndefined();
    const t1 = await h.connect.tokens.issue({ agentId });
    await h.connect.tokens.issue({ agentId });
    await h.connect.tokens.issue({ agentId, ttl: { seconds: 1n } });
    await h.connect.tokens.revoke({ target: { case: "tokenId", value: t1.tokenId }, reason: "one" });
    await new Promise((r) => setTimeout(r, 1100)); // the 1 s token expires
    const before = (await h.connect.agents.getAgent({ agentId })).agent!;
    expect(before.liveTokenCount).toBe(1n);
    expect(before.lastActivityAt).toBeDefined();

    const activity = createClient(ActivityService, h.connectTransport);
    await activity.reportActivity({ agentId, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "odd" });
    const listed = (await h.connect.agents.listAgents({ query: agentId })).agents[0]!;
    expect(listed.trustScore).toBeLessThan(100);
    expect(listed.liveTokenCount).toBe(1n);

    await h.connect.tokens.revoke({ target: { case: "agentId", value: agentId }, reason: "kill" });
    const after = (await h.connect.agents.getAgent({ agentId })).agent!;
    expect(after.status).toBe(AgentStatus.REVOKED);
    expect(after.liveTokenCount).toBe(0n);
  });
});

describe("GetCurrentPrincipal", () => {
  it("tells every role which key it is, without the secret", async () => {
    const admin = keysWith(h.adminKey);
    const rs = await admin.createApiKey({ name: "orders-api", role: Role.RESOURCE_SERVER, audiences: ["orders"] });
    const issuer = await admin.createApiKey({ name: "ci", role: Role.ISSUER });
    const me = await keysWith(rs.secret).getCurrentPrincipal({});
    expect(me.key).toMatchObject({ keyId: rs.key!.keyId, name: "orders-api", role: Role.RESOURCE_SERVER, audiences: ["orders"] });
    expect(me.principal).toBe(`key:${rs.key!.keyId}`);
    expect(JSON.stringify(me, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(rs.secret.slice(3));
    expect((await keysWith(issuer.secret).getCurrentPrincipal({})).key?.role).toBe(Role.ISSUER);
    expect((await admin.getCurrentPrincipal({})).key?.role).toBe(Role.ADMIN);
  });

  it("refuses a revoked key", async () => {
    const admin = keysWith(h.adminKey);
    const k = await admin.createApiKey({ name: "gone", role: Role.ISSUER });
    await admin.revokeApiKey({ keyId: k.key!.keyId });
    expect(await codeOf(keysWith(k.secret).getCurrentPrincipal({}))).toBe(Code.Unauthenticated);
  });
});

describe("the console's static files", () => {
  /** A raw HTTP/1.1 request, so that no client normalizes the path first. */
  async function rawGet(path: string): Promise<string> {
    const socket = net.connect(h.server.httpPort, "127.0.0.1");
    socket.end(`GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    let out = "";
    for await (const chunk of socket) out += String(chunk);
    return out;
  }

  it("serves nothing outside console/dist", async () => {
    for (const path of ["/console/../package.json", "/console/../../src/server/config.ts", "/console/%2e%2e/package.json", "/console/.vite/manifest.json"]) {
      const res = await rawGet(path);
      expect(res, path).toMatch(/^HTTP\/1\.1 404/);
      expect(res, path).not.toContain('"dependencies"');
    }
  });

  it("leaves the API alone: only GET and HEAD under /console/ and / are the console's", async () => {
    const res = await fetch(`http://127.0.0.1:${h.server.httpPort}/console/`, { method: "POST" });
    expect(res.status).toBe(404);
    const api = await fetch(`http://127.0.0.1:${h.server.httpPort}/agentid.v1.AgentService/ListAgents`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${h.adminKey}` },
      body: "{}",
    });
    expect(api.status).toBe(200);
  });
});
