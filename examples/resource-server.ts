// A resource server that accepts agentid tokens, verified by the SDK: the first request for a
// token is introspected over the network, later ones are answered from the local cache, and a
// revocation evicts the token within milliseconds through the feed. The SDK reports what it
// decided (counts per token, scope and outcome) to agentid about once a second, so the server's
// trust scores and policies see the traffic the cache hides.
// Run: AGENTID_GRPC=http://127.0.0.1:50051 PORT=3000 npx tsx examples/resource-server.ts
import http from "node:http";
import { pathToFileURL } from "node:url";
import { createVerifier, requireAgentToken, type Verifier } from "../src/client/index.js";

/** The routes and the scope each needs. */
const ROUTES: Record<string, { scope: string; body: unknown }> = {
  "/orders": { scope: "orders:read", body: { orders: ["#1001", "#1002"] } },
  "/customers": { scope: "customers:read", body: { customers: ["ada", "grace"] } },
  "/customers/export": { scope: "customers:export", body: { export: "customers.csv" } },
};

/** The orders API, guarded by `verifier`; /metrics shows the SDK's metrics. */
export function ordersApi(verifier: Verifier): http.Server {
  const guards = Object.fromEntries(Object.entries(ROUTES).map(([path, r]) => [path, requireAgentToken(verifier, { scope: r.scope })]));
  return http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (path === "/metrics") {
      const m = verifier.metrics();
      res.end(JSON.stringify({ ...m, feedRevision: String(m.feedRevision), feedLagRevisions: String(m.feedLagRevisions) }) + "\n");
      return;
    }
    const route = ROUTES[path];
    if (!route) {
      res.writeHead(404).end();
      return;
    }
    guards[path]!(req, res, () => {
      const who = (req as typeof req & { agentid?: { agentId: string } }).agentid!;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ...(route.body as object), servedTo: who.agentId }) + "\n");
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const verifier = createVerifier({
    // Any number of replicas: the feed follows one, introspection fails over between them.
    endpoints: (process.env.AGENTID_GRPC ?? "http://127.0.0.1:50051").split(","),
    audience: "https://orders.example.com",
    apiKey: process.env.AGENTID_API_KEY,
    mode: "strict",
    staleAfterMs: 5000,
    onFeedError: (err, endpoint) => console.error(`agentid feed ${endpoint}: ${err.message} (reconnecting)`),
  });
  const server = ordersApi(verifier);
  await verifier.ready();
  server.listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () =>
    console.log(`orders API on http://127.0.0.1:${process.env.PORT ?? 3000}, feed at revision ${verifier.metrics().feedRevision}`),
  );
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      server.close();
      void verifier.close().then(() => process.exit(0));
    });
  }
}
