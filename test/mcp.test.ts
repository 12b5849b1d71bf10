// agentid/mcp with the real MCP SDK on both sides: examples/mcp-server.ts (McpServer over
// Streamable HTTP, requireBearerAuth with the guard), and the SDK's Client whose
// PrivateKeyJwtProvider finds agentid through the server's RFC 9728 metadata and gets its token
// from /oauth2/token. A kill ends the tool call in flight, on stateful and stateless transports.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { generateKeyPairSync } from "node:crypto";
import type { Server } from "node:http";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { PrivateKeyJwtProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { discoverOAuthProtectedResourceMetadata } from "@modelcontextprotocol/sdk/client/auth.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { createMcpGuard, MCP_INSUFFICIENT_SCOPE, MCP_TOKEN_REVOKED } from "agentid/mcp";
import { countdownServer, mcpApp } from "../examples/mcp-server.js";
import { Role } from "../gen/agentid/v1/key_pb.js";
import { startHarness, type Harness } from "./support/harness.js";
import { freePort } from "../bench/lib/cluster.js";
import { until } from "./support/until.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ config: { activityBucketMs: 1000 } });
});
afterAll(() => h?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The example MCP server on a port of its own, guarded for its own URL. */
async function startMcp(stateful: boolean, newServer?: () => McpServer) {
  const port = await freePort();
  const resource = `http://127.0.0.1:${port}/mcp`;
  const { secret } = await h.grpc.keys.createApiKey({ name: `mcp ${port}`, role: Role.RESOURCE_SERVER, audiences: [resource] });
  const guard = createMcpGuard({ endpoint: `http://${h.grpcAddress}`, apiKey: secret, issuer: h.server.issuer, resource, toolScopes: { countdown: "tools:countdown" }, reportUsage: { intervalMs: 200 } });
  await guard.ready();
  const server: Server = await new Promise((resolve) => {
    const s = mcpApp(guard, { stateful, newServer }).listen(port, "127.0.0.1", () => resolve(s));
  });
  return {
    resource,
    guard,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await guard.close();
    },
  };
}

async function agent(allowedScopes: string[], allowedAudiences: string[]) {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = new Uint8Array(publicKey.export({ type: "spki", format: "der" }).subarray(-32));
  const { agent } = await h.grpc.agents.registerAgent({ name: "mcp agent", publicKey: raw, allowedScopes, allowedAudiences });
  return { id: agent!.agentId, jwk: privateKey.export({ format: "jwk" }) as Record<string, unknown> };
}

/** The SDK's client as an agent runs it: it discovers agentid from the server's 401 and gets its own token. */
async function connect(resource: string, a: { id: string; jwk: Record<string, unknown> }) {
  const provider = new PrivateKeyJwtProvider({ clientId: a.id, privateKey: a.jwk, algorithm: "EdDSA", expectedIssuer: h.server.issuer });
  const client = new Client({ name: "agent", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider }));
  return { client, token: () => provider.tokens()!.access_token };
}

const agentKill = promisify(execFile);

/** A JSON-RPC POST as any client sends it; the answer's messages (from JSON or an SSE stream). */
async function post(resource: string, token: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(resource, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const messages = res.headers.get("content-type")?.startsWith("text/event-stream")
    ? text
        .split("\n")
        .filter((l) => l.startsWith("data: "))
        .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>)
    : text
      ? [JSON.parse(text) as Record<string, unknown>]
      : [];
  return { res, messages };
}

describe.each([
  { name: "stateful", stateful: true },
  { name: "stateless", stateful: false },
])("a kill ends the MCP call in flight ($name)", ({ stateful }) => {
  let mcp: Awaited<ReturnType<typeof startMcp>>;
  beforeAll(async () => {
    mcp = await startMcp(stateful);
  });
  afterAll(() => mcp?.close());

  it("token from /oauth2/token via RFC 9728 discovery; countdown killed after two progress notifications; next call 401; all in the log", async () => {
    const a = await agent(["tools:countdown"], [mcp.resource]);
    const { client, token } = await connect(mcp.resource, a);
    const progress: { n: number; at: number }[] = [];
    let killed: Promise<unknown> | undefined;
    let killAcknowledged = 0;
    const call = client
      .callTool({ name: "countdown", arguments: { seconds: 10 } }, undefined, {
        timeout: 30_000,
        onprogress: (p) => {
          progress.push({ n: p.progress, at: Date.now() });
          if (progress.length === 2)
            killed = agentKill("node", ["bin/agentid.js", "agent", "kill", a.id, "--reason", "rogue MCP client", "--url", h.server.issuer, "--api-key", h.adminKey]).then(
              () => (killAcknowledged = Date.now()),
            );
        },
      })
      .then(
        () => new Error("the call completed"),
        (e: Error & { code?: number }) => e,
      );
    const err = await call;
    const endedAt = Date.now();
    await killed;
    expect(err.message).toMatch(/agent was revoked/);
    expect((err as { code?: number }).code).toBe(MCP_TOKEN_REVOKED);
    // The call ended by the kill, long before the countdown would have.
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.length).toBeLessThanOrEqual(3);
    const seen = progress.length;
    await sleep(1500);
    expect(progress.length).toBe(seen);
    expect(progress.every((p) => p.at <= endedAt)).toBe(true);
    expect(killAcknowledged).toBeGreaterThan(0);

    // The next call: 401 naming the metadata, so a client knows where to go.
    const next = await post(mcp.resource, token(), { jsonrpc: "2.0", id: 9, method: "tools/list" });
    expect(next.res.status).toBe(401);
    expect(next.res.headers.get("www-authenticate")).toContain(`resource_metadata="${mcp.guard.resourceMetadataUrl}"`);
    expect(next.res.headers.get("www-authenticate")).toContain('error="invalid_token"');
    await expect(client.listTools()).rejects.toThrow();

    // The transparency log: the grant, the tool's usage (reported by the guard) and the kill.
    const entries = await until(
      async () => (await h.grpc.audit.listEntries({ agentId: a.id, pageSize: 1000 })).entries,
      (es) => es.some((e) => e.kind === "activity.usage" && e.detailsJson.includes("tools:countdown")),
    );
    const issued = entries.find((e) => e.kind === "token.issued")!;
    expect(JSON.parse(issued.detailsJson)).toMatchObject({ grant: "client_credentials", audiences: [mcp.resource] });
    expect(entries.find((e) => e.kind === "agent.revoked")?.reason).toBe("rogue MCP client");
    const usage = entries.filter((e) => e.kind === "activity.usage").flatMap((e) => (JSON.parse(e.detailsJson) as { counts: Record<string, unknown>[] }).counts);
    // Which tool it called, under the tool's scope; and every HTTP request, counted once without either.
    expect(usage).toContainEqual({ source: "report", audience: mcp.resource, scope: "tools:countdown", operation: "tools/call countdown", outcome: "allowed", count: 1 });
    expect(usage).toContainEqual(expect.objectContaining({ audience: mcp.resource, scope: "", outcome: "allowed" }));
    const { events } = await h.grpc.activity.getActivity({ agentId: a.id });
    expect(events.filter((e) => e.kind === "usage").map((e) => e.summary).join("\n")).toContain("tools/call countdown tools:countdown@");
    await client.close();
  });

  it("revoking the token alone ends its call too", async () => {
    const a = await agent(["tools:countdown"], [mcp.resource]);
    const { client, token } = await connect(mcp.resource, a);
    const { tokenId } = await h.grpc.tokens.introspect({ token: token() });
    let revokedAt = 0;
    const err = await client
      .callTool({ name: "countdown", arguments: { seconds: 10 } }, undefined, {
        timeout: 30_000,
        onprogress: () => {
          if (revokedAt === 0) {
            revokedAt = Date.now();
            void h.grpc.tokens.revoke({ target: { case: "tokenId", value: tokenId }, reason: "leaked" });
          }
        },
      })
      .catch((e: Error & { code?: number }) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/token was revoked/);
    expect(Date.now() - revokedAt).toBeLessThan(5000);
    await client.close();
  });

  it("a tool that ignores its signal: the signal fired, and nothing it sends after the kill reaches the agent", async () => {
    const aborted: number[] = [];
    const stubborn = () => {
      const server = new McpServer({ name: "stubborn", version: "1.0.0" });
      server.registerTool("stubborn", { description: "sends progress every 100 ms whatever happens" }, async (extra) => {
        extra.signal.addEventListener("abort", () => aborted.push(Date.now()));
        const progressToken = extra._meta?.progressToken ?? 0;
        for (let i = 1; i <= 30; i++) {
          await sleep(100);
          // Past the SDK's own check of the signal: straight to the transport.
          await server.server
            .notification({ method: "notifications/progress", params: { progressToken, progress: i } }, { relatedRequestId: extra.requestId })
            .catch(() => {});
        }
        return { content: [{ type: "text", text: "done" }] };
      });
      return server;
    };
    const own = await startMcp(stateful, stubborn);
    try {
      const a = await agent([], [own.resource]);
      const { client } = await connect(own.resource, a);
      const progress: number[] = [];
      let killedAt = 0;
      const err = await client
        .callTool({ name: "stubborn", arguments: {} }, undefined, {
          timeout: 30_000,
          onprogress: () => {
            progress.push(Date.now());
            if (progress.length === 3) {
              killedAt = Date.now();
              void h.grpc.tokens.revoke({ target: { case: "agentId", value: a.id }, reason: "stubborn" });
            }
          },
        })
        .catch((e: Error) => e);
      const endedAt = Date.now();
      expect(String(err)).toMatch(/agent was revoked/);
      await sleep(1000);
      expect(aborted).toHaveLength(1);
      expect(aborted[0]).toBeGreaterThanOrEqual(killedAt);
      expect(progress.filter((at) => at > endedAt)).toEqual([]);
      await client.close();
    } finally {
      await own.close();
    }
  });
});

describe("the guard", () => {
  let mcp: Awaited<ReturnType<typeof startMcp>>;
  beforeAll(async () => {
    mcp = await startMcp(true);
  });
  afterAll(() => mcp?.close());

  it("serves RFC 9728 metadata naming agentid, and a 401 without a token points to it", async () => {
    const meta = await discoverOAuthProtectedResourceMetadata(new URL(mcp.resource));
    expect(meta).toMatchObject({ resource: mcp.resource, authorization_servers: [h.server.issuer], bearer_methods_supported: ["header"] });
    const res = await fetch(mcp.resource, { method: "POST", body: "{}" });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain(`resource_metadata="${mcp.guard.resourceMetadataUrl}"`);
    expect((await fetch(mcp.guard.resourceMetadataUrl, { method: "OPTIONS" })).headers.get("access-control-allow-origin")).toBe("*");
    expect((await fetch(mcp.guard.resourceMetadataUrl, { method: "DELETE" })).status).toBe(405);
  });

  it("refuses a token for another audience with 401", async () => {
    const a = await agent(["tools:countdown"], ["https://elsewhere.example.com/mcp"]);
    const { token } = await h.grpc.tokens.issue({ agentId: a.id, scopes: ["tools:countdown"], audiences: ["https://elsewhere.example.com/mcp"] });
    const r = await post(mcp.resource, token, { jsonrpc: "2.0", id: 1, method: "tools/list" });
    expect(r.res.status).toBe(401);
    // The server's key sees only its audiences: to it, a token for another is no token at all.
    expect(r.res.headers.get("www-authenticate")).toContain('error="invalid_token"');
  });

  it("a tool's scope: refused without it, counted as a scope violation", async () => {
    const a = await agent(["tools:other"], [mcp.resource]);
    const { client } = await connect(mcp.resource, a);
    const err = await client.callTool({ name: "countdown", arguments: { seconds: 1 } }).catch((e: Error & { code?: number }) => e);
    expect((err as { code?: number }).code).toBe(MCP_INSUFFICIENT_SCOPE);
    expect((err as Error).message).toMatch(/tool countdown needs scope tools:countdown/);
    // The refusal reaches agentid as any gate's does: a scope violation in the agent's trust score.
    const adherence = async () =>
      (await h.grpc.activity.getTrustScore({ agentId: a.id })).trustScore!.factors.find((f) => f.name === "scope_adherence")!;
    const factor = await until(adherence, (f) => f.count > 0n);
    expect(factor.count).toBe(1n);
    expect(factor.contribution).toBeLessThan(0);
    await client.close();
  });

  it("a session belongs to the agent that opened it", async () => {
    const a = await agent(["tools:countdown"], [mcp.resource]);
    const b = await agent(["tools:countdown"], [mcp.resource]);
    const init = { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } };
    const tokenA = (await h.grpc.tokens.issue({ agentId: a.id, scopes: ["tools:countdown"], audiences: [mcp.resource] })).token;
    const tokenB = (await h.grpc.tokens.issue({ agentId: b.id, scopes: ["tools:countdown"], audiences: [mcp.resource] })).token;
    const opened = await post(mcp.resource, tokenA, init);
    const session = opened.res.headers.get("mcp-session-id")!;
    expect(session).toBeTruthy();
    const headers = { "mcp-session-id": session, "mcp-protocol-version": "2025-06-18" };
    const theirs = await post(mcp.resource, tokenB, { jsonrpc: "2.0", id: 2, method: "tools/list" }, headers);
    expect(theirs.messages).toEqual([expect.objectContaining({ id: 2, error: expect.objectContaining({ code: MCP_TOKEN_REVOKED, message: expect.stringMatching(/another agent/) }) })]);
    const mine = await post(mcp.resource, tokenA, { jsonrpc: "2.0", id: 3, method: "tools/list" }, headers);
    expect(mine.messages).toEqual([expect.objectContaining({ id: 3, result: expect.objectContaining({ tools: [expect.objectContaining({ name: "countdown" })] }) })]);
  });

  it("a kill closes the session: its standalone SSE stream ends", async () => {
    const a = await agent(["tools:countdown"], [mcp.resource]);
    const { token } = await h.grpc.tokens.issue({ agentId: a.id, scopes: ["tools:countdown"], audiences: [mcp.resource] });
    const init = { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } };
    const session = (await post(mcp.resource, token, init)).res.headers.get("mcp-session-id")!;
    const headers = { "mcp-session-id": session, "mcp-protocol-version": "2025-06-18" };
    expect((await post(mcp.resource, token, { jsonrpc: "2.0", method: "notifications/initialized" }, headers)).res.status).toBe(202);
    const stream = await fetch(mcp.resource, { headers: { authorization: `Bearer ${token}`, accept: "text/event-stream", ...headers } });
    expect(stream.status).toBe(200);
    const ended = stream.body!.pipeTo(new WritableStream()).then(
      () => Date.now(),
      () => Date.now(),
    );
    const killedAt = Date.now();
    await h.grpc.tokens.revoke({ target: { case: "agentId", value: a.id }, reason: "session" });
    expect((await ended) - killedAt).toBeLessThan(5000);
    // Its next request: 401, before the session is looked up.
    const again = await post(mcp.resource, token, { jsonrpc: "2.0", id: 2, method: "tools/list" }, headers);
    expect(again.res.status).toBe(401);
  });

  it("a revocation between the token's check and the request's delivery still refuses the request", async () => {
    const a = await agent(["tools:countdown"], [mcp.resource]);
    const { token, tokenId } = await h.grpc.tokens.issue({ agentId: a.id, scopes: ["tools:countdown"], audiences: [mcp.resource] });
    const auth = await mcp.guard.verifyAccessToken(token);
    expect(auth).toMatchObject({ clientId: a.id, scopes: ["tools:countdown"], resource: new URL(mcp.resource), extra: { agentId: a.id, tokenId } });
    // The revocation reaches the guard before the request reaches the server.
    await h.grpc.tokens.revoke({ target: { case: "tokenId", value: tokenId }, reason: "race" });
    await until(
      () => mcp.guard.verifier.verify(token),
      (r) => !r.active,
    );
    const [agentSide, serverSide] = InMemoryTransport.createLinkedPair();
    const called: string[] = [];
    const server = countdownServer();
    server.server.setRequestHandler(ListToolsRequestSchema, () => {
      called.push("tools/list");
      return { tools: [] };
    });
    await mcp.guard.connect(server, serverSide);
    const replies: JSONRPCMessage[] = [];
    agentSide.onmessage = (m) => void replies.push(m);
    await agentSide.start();
    await agentSide.send({ jsonrpc: "2.0", id: 1, method: "tools/list" }, { authInfo: auth });
    await until(
      async () => replies,
      (r) => r.length > 0,
    );
    expect(replies).toEqual([expect.objectContaining({ id: 1, error: expect.objectContaining({ code: MCP_TOKEN_REVOKED, data: { error: "invalid_token", reason: "revoked" } }) })]);
    expect(called).toEqual([]);
  });
});

describe("examples/mcp-server.ts as its README runs it", () => {
  it("starts from its environment, serves countdown to an agent, and stops on SIGTERM", async () => {
    const port = await freePort();
    const resource = `http://127.0.0.1:${port}/mcp`;
    const { secret } = await h.grpc.keys.createApiKey({ name: "example mcp", role: Role.RESOURCE_SERVER, audiences: [resource] });
    const child = spawn(process.execPath, ["node_modules/tsx/dist/cli.mjs", "examples/mcp-server.ts"], {
      env: { ...process.env, AGENTID_GRPC: `http://${h.grpcAddress}`, AGENTID_URL: h.server.issuer, AGENTID_API_KEY: secret, PORT: String(port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((r) => child.once("exit", r));
    try {
      let out = "";
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on("data", (d) => (out += d) && out.includes("MCP server on") && resolve());
        child.stderr!.on("data", (d) => (out += d));
        void exited.then(() => reject(new Error(`the example exited: ${out}`)));
      });
      expect(out).toContain(`resource ${resource}`);
      const a = await agent(["tools:countdown"], [resource]);
      const { client } = await connect(resource, a);
      const progress: number[] = [];
      const result = await client.callTool({ name: "countdown", arguments: { seconds: 1 } }, undefined, { onprogress: (p) => void progress.push(p.progress) });
      expect(result.content).toEqual([{ type: "text", text: "counted down 1 s" }]);
      expect(progress).toEqual([1]);
      await client.close();
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });
});

describe("the README's MCP wiring", () => {
  it("is the example's, line for line", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const example = new Set((await readFile(new URL("../examples/mcp-server.ts", import.meta.url), "utf8")).split("\n").map((l) => l.trim()));
    const section = readme.slice(readme.indexOf("## Guard an MCP server"));
    const block = /```ts\n([\s\S]*?)```/.exec(section)![1]!;
    const lines = block.split("\n").map((l) => l.trim()).filter((l) => l !== "");
    expect(lines.length).toBeGreaterThan(10);
    expect(lines.filter((l) => !example.has(l))).toEqual([]);
  });
});
