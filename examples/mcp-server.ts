// An MCP server (the MCP SDK's McpServer over Streamable HTTP) that trusts agentid: agents get
// their token from agentid's /oauth2/token for this server's URL, the SDK's requireBearerAuth
// checks it with agentid/mcp's guard, and a revocation ends the agent's tool call in flight.
// Run (a resource_server key whose audiences include MCP_RESOURCE):
//   AGENTID_GRPC=http://127.0.0.1:50051 AGENTID_URL=http://127.0.0.1:8080 AGENTID_API_KEY=... \
//   PORT=3001 npx tsx examples/mcp-server.ts
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import express from "express";
import { z } from "zod";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import { createMcpGuard, type McpGuard } from "agentid/mcp";

/** The MCP server: one tool, `countdown`, that reports progress every second. */
export function countdownServer(): McpServer {
  const server = new McpServer({ name: "countdown", version: "1.0.0" });
  server.registerTool(
    "countdown",
    { description: "Counts down, one progress notification a second", inputSchema: { seconds: z.number().int().min(1).max(3600) } },
    async ({ seconds }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= seconds; i++) {
        // Rejects when the call is cancelled: by the client, or by agentid revoking the caller.
        await sleep(1000, undefined, { signal: extra.signal });
        if (progressToken !== undefined) {
          await extra.sendNotification({ method: "notifications/progress", params: { progressToken, progress: i, total: seconds } });
        }
      }
      return { content: [{ type: "text", text: `counted down ${seconds} s` }] };
    },
  );
  return server;
}

/**
 * MCP at /mcp, guarded. Stateful: a session per initialize (bound to its agent by the guard);
 * stateless: a server and transport per request. `newServer` builds the MCP server.
 */
export function mcpApp(guard: McpGuard, opts: { stateful: boolean; newServer?: () => McpServer }): express.Express {
  const newServer = opts.newServer ?? countdownServer;
  const app = express();
  app.use(guard.metadataHandler);
  const auth = requireBearerAuth({ verifier: guard, resourceMetadataUrl: guard.resourceMetadataUrl });
  if (!opts.stateful) {
    app.post("/mcp", auth, async (req, res) => {
      const server = newServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on("close", () => void transport.close().then(() => server.close()));
      await guard.connect(server, transport);
      await transport.handleRequest(req, res);
    });
    return app;
  }
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  app.all("/mcp", auth, async (req, res) => {
    const id = req.headers["mcp-session-id"];
    let transport = typeof id === "string" ? sessions.get(id) : undefined;
    if (!transport) {
      if (id !== undefined || req.method !== "POST") {
        res.status(404).json({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" }, id: null });
        return;
      }
      const t = (transport = new StreamableHTTPServerTransport({ sessionIdGenerator: randomUUID, onsessioninitialized: (sid) => void sessions.set(sid, t) }));
      t.onclose = () => void (t.sessionId && sessions.delete(t.sessionId));
      await guard.connect(newServer(), t);
    }
    await transport.handleRequest(req, res);
  });
  return app;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3001);
  const guard = createMcpGuard({
    endpoints: (process.env.AGENTID_GRPC ?? "http://127.0.0.1:50051").split(","),
    apiKey: process.env.AGENTID_API_KEY,
    issuer: process.env.AGENTID_URL ?? "http://127.0.0.1:8080",
    resource: process.env.MCP_RESOURCE ?? `http://127.0.0.1:${port}/mcp`,
    toolScopes: { countdown: "tools:countdown" },
    onFeedError: (err, endpoint) => console.error(`agentid feed ${endpoint}: ${err.message} (reconnecting)`),
  });
  await guard.ready();
  const server = mcpApp(guard, { stateful: process.env.MCP_STATELESS !== "1" }).listen(port, "127.0.0.1", () =>
    console.log(`MCP server on http://127.0.0.1:${port}/mcp, resource ${guard.metadata.resource}`),
  );
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      server.close();
      server.closeAllConnections();
      void guard.close().then(() => process.exit(0));
    });
  }
}
