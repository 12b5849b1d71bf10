// A resource server that accepts agentid tokens, verified by the SDK: the first request for a
// token is introspected over the network, later ones are answered from the local cache, and a
// revocation evicts the token within milliseconds through the feed.
// Run: AGENTID_GRPC=http://127.0.0.1:50051 PORT=3000 npx tsx examples/resource-server.ts
import http from "node:http";
import { createVerifier, requireAgentToken } from "../src/client/index.js";

const verifier = createVerifier({
  // Any number of replicas: the feed follows one, introspection fails over between them.
  endpoints: (process.env.AGENTID_GRPC ?? "http://127.0.0.1:50051").split(","),
  audience: "https://orders.example.com",
  apiKey: process.env.AGENTID_API_KEY,
  mode: "strict",
  staleAfterMs: 5000,
  onFeedError: (err, endpoint) => console.error(`agentid feed ${endpoint}: ${err.message} (reconnecting)`),
});
const guard = requireAgentToken(verifier, { scope: "orders:read" });

const server = http.createServer((req, res) => {
  if (req.url === "/metrics") {
    const m = verifier.metrics();
    res.end(JSON.stringify({ ...m, feedRevision: String(m.feedRevision), feedLagRevisions: String(m.feedLagRevisions) }) + "\n");
    return;
  }
  guard(req, res, () => {
    const who = (req as typeof req & { agentid?: { agentId: string } }).agentid!;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ orders: ["#1001", "#1002"], servedTo: who.agentId }) + "\n");
  });
});

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
