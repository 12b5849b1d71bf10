// Kill -> the MCP tool call in flight ended at the agent, beside kill -> the revocation event at a
// feed watcher, in the same trials. agentid runs in its own process on its own PostgreSQL; the
// guarded MCP server (examples/mcp-server.ts, stateful), the agents (the SDK's Client over
// Streamable HTTP, each calling `countdown`) and the watcher run in this process, so one clock
// times all three. Each trial: once the call has reported its first progress, the agent is killed
// (RevokeRequest for the agent, admin key); the event time is when the watcher's stream delivers
// it, the end time when the agent's callTool rejects.
// Run: npx tsx bench/mcp-kill.ts [--full]
import { generateKeyPairSync } from "node:crypto";
import type { Server } from "node:http";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../gen/agentid/v1/token_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { FeedFollower } from "../src/client/feed.js";
import { createMcpGuard } from "../src/client/mcp.js";
import { mcpApp } from "../examples/mcp-server.js";
import { startAgentid } from "./lib/procs.js";
import { freePort, startOwnPostgres } from "./lib/cluster.js";
import { bearer } from "./lib/clients.js";
import { quantile } from "./load/stats.js";

export interface McpKillResult {
  trials: number;
  eventP50Ms: number;
  eventP99Ms: number;
  endedP50Ms: number;
  endedP99Ms: number;
  /** Progress notifications that reached an agent after its call had ended (must be 0). */
  lateProgress: number;
}

/** `trials` kills, `parallel` at a time (agents calling and being killed while others are). */
export async function mcpKill(full: boolean): Promise<McpKillResult> {
  const trials = full ? 300 : 100;
  const parallel = 8;
  const pg = await startOwnPostgres();
  const adminKey = newSecret(API_KEY_PREFIX);
  let agentid: Awaited<ReturnType<typeof startAgentid>> | undefined;
  let http: Server | undefined;
  const close: (() => Promise<void>)[] = [];
  try {
    agentid = await startAgentid({ DATABASE_URL: pg.url, AGENTID_ADMIN_KEY: adminKey, LOG_LEVEL: "warn" });
    const admin = createConnectTransport({ baseUrl: agentid.url, httpVersion: "1.1", interceptors: [bearer(adminKey)] });
    const port = await freePort();
    const resource = `http://127.0.0.1:${port}/mcp`;
    const rsKey = (await createClient(KeyService, admin).createApiKey({ name: "bench mcp", role: Role.RESOURCE_SERVER, audiences: [resource] })).secret;
    const guard = createMcpGuard({ endpoint: `http://${agentid.grpcAddress}`, apiKey: rsKey, issuer: agentid.url, resource });
    close.push(() => guard.close());
    await guard.ready();
    http = await new Promise<Server>((resolve) => {
      const s = mcpApp(guard, { stateful: true }).listen(port, "127.0.0.1", () => resolve(s));
    });

    // The baseline: a watcher on the feed with the same resource server key, as a gateway holds.
    const delivered = new Map<string, (at: number) => void>();
    const watcher = new FeedFollower({
      endpoints: [`http://${agentid.grpcAddress}`],
      apiKey: rsKey,
      onEvent: (e) => {
        if (e.target.case === "agentId") delivered.get(e.target.value)?.(performance.now());
      },
    });
    watcher.start();
    close.push(() => watcher.close());

    const agents = createClient(AgentService, admin);
    const tokens = createClient(TokenService, admin);
    const samples: { event: number; ended: number }[] = [];
    let lateProgress = 0;

    async function trial(): Promise<void> {
      const { publicKey } = generateKeyPairSync("ed25519");
      const { agent } = await agents.registerAgent({ name: "bench mcp agent", publicKey: publicKey.export({ type: "spki", format: "der" }).subarray(-32), allowedAudiences: [resource] });
      const agentId = agent!.agentId;
      const { token } = await tokens.issue({ agentId, audiences: [resource] });
      const client = new Client({ name: "bench agent", version: "1.0.0" });
      await client.connect(new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
      let killedAt = 0;
      let endedAt = 0;
      const event = new Promise<number>((resolve) => delivered.set(agentId, resolve));
      let kill: Promise<unknown> | undefined;
      await client
        .callTool({ name: "countdown", arguments: { seconds: 60 } }, undefined, {
          timeout: 60_000,
          onprogress: () => {
            if (endedAt !== 0) lateProgress++;
            if (killedAt !== 0) return;
            killedAt = performance.now();
            kill = tokens.revoke({ target: { case: "agentId", value: agentId }, reason: "bench" });
          },
        })
        .then(
          () => {
            throw new Error("countdown was not ended by the kill");
          },
          () => (endedAt = performance.now()),
        );
      await kill;
      const eventAt = await event;
      delivered.delete(agentId);
      samples.push({ event: eventAt - killedAt, ended: endedAt - killedAt });
      await client.close().catch(() => {});
    }

    let started = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (started < trials) {
          started++;
          await trial();
        }
      }),
    );
    // A progress notification the server had sent on would still be on its way: give it a moment.
    await new Promise((r) => setTimeout(r, 1500));
    const events = samples.map((s) => s.event);
    const ended = samples.map((s) => s.ended);
    return {
      trials: samples.length,
      eventP50Ms: quantile(events, 0.5),
      eventP99Ms: quantile(events, 0.99),
      endedP50Ms: quantile(ended, 0.5),
      endedP99Ms: quantile(ended, 0.99),
      lateProgress,
    };
  } finally {
    http?.closeAllConnections();
    http?.close();
    for (const c of close) await c().catch(() => {});
    await agentid?.stop();
    await pg.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await mcpKill(process.argv.includes("--full"));
  console.log(
    [
      `${r.trials} kills of an agent with a countdown call in flight (stateful Streamable HTTP, 8 at a time):`,
      `kill -> revocation event at a feed watcher:   p50 ${r.eventP50Ms.toFixed(1)} ms, p99 ${r.eventP99Ms.toFixed(1)} ms`,
      `kill -> MCP call ended at the agent:          p50 ${r.endedP50Ms.toFixed(1)} ms, p99 ${r.endedP99Ms.toFixed(1)} ms -> p99 ratio ${(r.endedP99Ms / r.eventP99Ms).toFixed(2)}x`,
      `progress delivered after a call had ended: ${r.lateProgress}`,
    ].join("\n"),
  );
  process.exit(0);
}
