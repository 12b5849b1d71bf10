// Envoy ext_authz v3 Check, called by a grpc-js client built from the Envoy protos in proto/envoy,
// sending what Envoy's ext_authz filter sends (including fields agentid's subset does not declare).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { bearer, publicKey, startHarness, type Harness } from "./support/harness.js";
import { parseExposition } from "./support/prom.js";

let h: Harness;
let rsKey: string;
let issuerKey: string;
let agentId: string;
let client: grpc.Client & { Check: Function };

interface CheckResponse {
  status?: { code: number; message: string };
  http_response: "ok_response" | "denied_response";
  ok_response?: { headers: { header: { key: string; value: string }; append_action: string; keep_empty_value: boolean }[]; headers_to_remove: string[] };
  denied_response?: { status: { code: string }; headers: { header: { key: string; value: string } }[]; body: string };
}

// Fields Envoy sends that agentid's subset leaves out (source and destination peers, metadata),
// appended as raw protobuf so the server sees exactly such a request.
function field(no: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(no << 3) | 2, payload.length]), payload]);
}
// CheckRequest.attributes (1) again: protobuf merges a repeated message field into the first.
const ENVOY_EXTRAS = field(
  1,
  Buffer.concat([
    field(1, Buffer.concat([field(2, Buffer.from("frontend")), field(4, Buffer.from("spiffe://cluster.local/ns/default/sa/frontend"))])),
    field(2, field(2, Buffer.from("orders"))),
    field(11, Buffer.alloc(0)),
  ]),
);

beforeAll(async () => {
  h = await startHarness();
  const keys = createClient(KeyService, createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors: [bearer(h.adminKey)] }));
  rsKey = (await keys.createApiKey({ name: "envoy", role: Role.RESOURCE_SERVER, audiences: ["orders"] })).secret;
  issuerKey = (await keys.createApiKey({ name: "issuer", role: Role.ISSUER })).secret;
  agentId = (await h.grpc.agents.registerAgent({ name: "envoy agent", publicKey: publicKey(), allowedScopes: ["orders:read"], allowedAudiences: ["orders", "billing"] })).agent!.agentId;

  const pkg = loadSync(resolve(import.meta.dirname, "../proto/envoy/service/auth/v3/external_auth.proto"), {
    includeDirs: [resolve(import.meta.dirname, "../proto")],
    keepCase: true,
    enums: String,
    longs: String,
    oneofs: true,
  });
  const service = pkg["envoy.service.auth.v3.Authorization"] as grpc.ServiceDefinition;
  const serialize = service.Check!.requestSerialize;
  const Ctor = grpc.makeGenericClientConstructor(
    { ...service, Check: { ...service.Check!, requestSerialize: (v: unknown) => Buffer.concat([serialize(v), ENVOY_EXTRAS]) } },
    "Authorization",
  );
  client = new Ctor(h.grpcAddress, grpc.credentials.createInsecure()) as never;
});
afterAll(async () => {
  client?.close();
  await h?.close();
});

function envoyRequest(token: string | undefined, o: { scope?: string; raw?: boolean; extra?: Record<string, string> } = {}) {
  const headers: Record<string, string> = {
    ...o.extra,
    ":authority": "orders.example.com",
    ":method": "GET",
    ":path": "/orders/42?x=1",
    ":scheme": "https",
    "user-agent": "curl/8.5.0",
    "x-request-id": "6a8b7f3e-5c1d-4c2e-9f0a-1b2c3d4e5f60",
    "x-forwarded-proto": "https",
    ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
  };
  const http = {
    id: "1469617435498451200",
    method: "GET",
    path: "/orders/42?x=1",
    host: "orders.example.com",
    scheme: "https",
    protocol: "HTTP/1.1",
    size: "0",
    ...(o.raw
      ? { header_map: { headers: Object.entries(headers).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) } }
      : { headers }),
  };
  return {
    attributes: {
      request: { time: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 }, http },
      context_extensions: o.scope ? { agentid_scope: o.scope } : {},
    },
  };
}

function check(req: unknown, o: { key?: string; scopeMetadata?: string } = {}): Promise<CheckResponse> {
  const md = new grpc.Metadata();
  const key = o.key ?? rsKey;
  if (key) md.set("authorization", `Bearer ${key}`);
  if (o.scopeMetadata) md.set("x-agentid-scope", o.scopeMetadata);
  return new Promise((res, rej) => client.Check(req, md, (err: Error | null, r: CheckResponse) => (err ? rej(err) : res(r))));
}

const headersOf = (r: CheckResponse) =>
  Object.fromEntries((r.ok_response?.headers ?? r.denied_response?.headers ?? []).map((o) => [o.header.key, o.header.value]));

/**
 * The request Envoy's ext_authz filter forwards upstream after an OK Check, as its API documents
 * it: each header by its append_action (an empty value is dropped unless keep_empty_value), then
 * headers_to_remove.
 */
function upstreamRequest(sent: Record<string, string>, r: CheckResponse): Record<string, string[]> {
  const out = new Map<string, string[]>(Object.entries(sent).map(([k, v]) => [k.toLowerCase(), [v]]));
  for (const { header, append_action, keep_empty_value } of r.ok_response!.headers) {
    if (header.value === "" && !keep_empty_value) continue;
    const key = header.key.toLowerCase();
    const had = out.get(key);
    if (append_action === "OVERWRITE_IF_EXISTS_OR_ADD") out.set(key, [header.value]);
    else if (append_action === "APPEND_IF_EXISTS_OR_ADD") out.set(key, [...(had ?? []), header.value]);
    else if (append_action === "ADD_IF_ABSENT" && !had) out.set(key, [header.value]);
    else if (append_action === "OVERWRITE_IF_EXISTS" && had) out.set(key, [header.value]);
  }
  for (const key of r.ok_response!.headers_to_remove ?? []) out.delete(key.toLowerCase());
  return Object.fromEntries(out);
}

describe("envoy.service.auth.v3.Authorization/Check", () => {
  it("leaves the upstream no client-sent identity header, also for a token with no scopes", async () => {
    const forged = {
      "x-agentid-agent-id": "agt_forged",
      "x-agentid-token-id": "tok_forged",
      "x-agentid-scopes": "orders:read orders:write admin",
      "x-agentid-audiences": "orders billing admin",
      "x-agentid-expires-at": "2099-01-01T00:00:00Z",
    };
    for (const scopes of [["orders:read"], []]) {
      const t = await h.grpc.tokens.issue({ agentId, scopes, audiences: ["orders"] });
      for (const raw of [false, true]) {
        const r = await check(envoyRequest(t.token, { raw, extra: forged }));
        expect(r.http_response).toBe("ok_response");
        const upstream = upstreamRequest({ ...forged, authorization: `Bearer ${t.token}` }, r);
        const identity = Object.fromEntries(Object.entries(upstream).filter(([k]) => k.startsWith("x-agentid-")));
        expect(identity).toEqual({
          "x-agentid-agent-id": [agentId],
          "x-agentid-token-id": [t.tokenId],
          ...(scopes.length ? { "x-agentid-scopes": [scopes.join(" ")] } : {}),
          "x-agentid-audiences": ["orders"],
          "x-agentid-expires-at": [timestampDate(t.expiresAt!).toISOString()],
        });
      }
    }
  });

  it("allows a valid token and hands the upstream its agent, token id and scopes, overwriting client-sent copies", async () => {
    const t = await h.grpc.tokens.issue({ agentId, scopes: ["orders:read"], audiences: ["orders"] });
    for (const raw of [false, true]) {
      const r = await check(envoyRequest(t.token, { scope: "orders:read", raw }));
      expect(r.status?.code ?? 0).toBe(0);
      expect(r.http_response).toBe("ok_response");
      expect(headersOf(r)).toMatchObject({
        "x-agentid-agent-id": agentId,
        "x-agentid-token-id": t.tokenId,
        "x-agentid-scopes": "orders:read",
        "x-agentid-audiences": "orders",
      });
      expect(r.ok_response!.headers.every((o) => o.append_action === "OVERWRITE_IF_EXISTS_OR_ADD")).toBe(true);
    }
  });

  it("denies with 401 (no token, unknown token, another audience's token) and 403 (scope), as Introspect would", async () => {
    const other = await h.grpc.tokens.issue({ agentId, scopes: ["orders:read"], audiences: ["billing"] });
    const t = await h.grpc.tokens.issue({ agentId, scopes: ["orders:read"], audiences: ["orders"] });
    const cases: [unknown, { scopeMetadata?: string } | undefined, string, number, RegExp][] = [
      [envoyRequest(undefined), undefined, "401", 16, /^Bearer$/],
      [envoyRequest("at_not_a_real_token"), undefined, "401", 16, /invalid_token/],
      [envoyRequest(other.token), undefined, "401", 16, /invalid_token/],
      [envoyRequest(other.token, { scope: "orders:write" }), undefined, "401", 16, /invalid_token/],
      [envoyRequest(t.token, { scope: "orders:write" }), undefined, "403", 7, /insufficient_scope.*orders:write/],
      [envoyRequest(t.token), { scopeMetadata: "orders:write" }, "403", 7, /insufficient_scope/],
    ];
    for (const [req, o, http, grpcCode, challenge] of cases) {
      const r = await check(req, o);
      expect(r.http_response).toBe("denied_response");
      expect(r.denied_response!.status.code).toBe(http === "401" ? "Unauthorized" : "Forbidden");
      expect(r.status!.code).toBe(grpcCode);
      expect(headersOf(r)["www-authenticate"]).toMatch(challenge);
    }
  });

  it("requires the caller's own resource_server (or admin) key in the call's metadata", async () => {
    const t = await h.grpc.tokens.issue({ agentId, scopes: [], audiences: ["orders"] });
    await expect(check(envoyRequest(t.token), { key: "" })).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    await expect(check(envoyRequest(t.token), { key: issuerKey })).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    await expect(check(envoyRequest(t.token, { scope: "bad scope" }))).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

  it("answers repeat checks from memory, and a revocation (token, then agent) ends them through the feed", async () => {
    const t = await h.grpc.tokens.issue({ agentId, scopes: ["orders:read"], audiences: ["orders"] });
    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${h.server.httpPort}/metrics`, { headers: { authorization: `Bearer ${h.adminKey}` } });
      return parseExposition(await res.text());
    };
    const before = (await scrape()).value("agentid_ext_authz_cache_lookups", { result: "hit" })!;
    for (let i = 0; i < 20; i++) expect((await check(envoyRequest(t.token))).http_response).toBe("ok_response");
    expect((await scrape()).value("agentid_ext_authz_cache_lookups", { result: "hit" })! - before).toBeGreaterThanOrEqual(19);

    await h.grpc.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "ext_authz test" });
    await expect.poll(async () => (await check(envoyRequest(t.token))).http_response, { timeout: 5000, interval: 20 }).toBe("denied_response");

    const agent2 = (await h.grpc.agents.registerAgent({ name: "killed", publicKey: publicKey(), allowedAudiences: ["orders"] })).agent!.agentId;
    const t2 = await h.grpc.tokens.issue({ agentId: agent2, scopes: [], audiences: ["orders"] });
    expect((await check(envoyRequest(t2.token))).http_response).toBe("ok_response");
    await h.grpc.tokens.revoke({ target: { case: "agentId", value: agent2 }, reason: "kill switch" });
    await expect.poll(async () => (await check(envoyRequest(t2.token))).http_response, { timeout: 5000, interval: 20 }).toBe("denied_response");
  });
});
