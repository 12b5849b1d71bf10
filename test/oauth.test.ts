// RFC 7662 introspection and RFC 7009 revocation, with a plain HTTP client, after the RFCs' examples.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { InactiveReason } from "../gen/agentid/v1/token_pb.js";
import { bearer, clientsFor, publicKey, startHarness, type Harness } from "./support/harness.js";

let h: Harness;
let base: string;
let rsKey: string;
let issuer: { id: string; secret: string };
let agentId: string;

beforeAll(async () => {
  h = await startHarness();
  base = `http://127.0.0.1:${h.server.httpPort}`;
  const keys = createClient(KeyService, createConnectTransport({ baseUrl: base, httpVersion: "1.1", interceptors: [bearer(h.adminKey)] }));
  rsKey = (await keys.createApiKey({ name: "orders api", role: Role.RESOURCE_SERVER, audiences: ["orders"] })).secret;
  const iss = await keys.createApiKey({ name: "issuer", role: Role.ISSUER });
  issuer = { id: iss.key!.keyId, secret: iss.secret };
  agentId = (await h.grpc.agents.registerAgent({ name: "oauth agent", publicKey: publicKey(), allowedScopes: ["read", "write"], allowedAudiences: ["orders", "billing"] })).agent!.agentId;
});
afterAll(() => h?.close());

const issue = (audiences = ["orders"], scopes = ["read", "write"]) => h.grpc.tokens.issue({ agentId, scopes, audiences });

function post(path: string, body: string, headers: Record<string, string>) {
  return fetch(base + path, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json", ...headers }, body });
}
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`;

describe("POST /oauth2/introspect (RFC 7662)", () => {
  it("answers an active token with the RFC's field names and agentid's extras", async () => {
    const t = await issue();
    const res = await post("/oauth2/introspect", `token=${t.token}&token_type_hint=access_token`, { authorization: `Bearer ${rsKey}` });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      active: true,
      scope: "read write",
      token_type: "Bearer",
      sub: agentId,
      aud: ["orders"],
      jti: t.tokenId,
      exp: Number(t.expiresAt!.seconds),
      agentid_agent_id: agentId,
      agentid_token_id: t.tokenId,
    });
    expect(typeof body.iat).toBe("number");
    expect(body.agentid_revision).toMatch(/^\d+$/);
  });

  it('answers {"active": false} and nothing more for the RFC example token, a revoked one and another audience\'s', async () => {
    const revoked = await issue();
    await h.grpc.tokens.revoke({ target: { case: "tokenId", value: revoked.tokenId }, reason: "test" });
    const other = await issue(["billing"]);
    for (const token of ["2YotnFZFEjr1zCsicMWpAA", revoked.token, other.token]) {
      const res = await post("/oauth2/introspect", `token=${encodeURIComponent(token)}`, { authorization: `Bearer ${rsKey}` });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ active: false });
    }
    // Exactly as the RPC answers the same key for the other audience's token.
    const rpc = await clientsFor(createConnectTransport({ baseUrl: base, httpVersion: "1.1", interceptors: [bearer(rsKey)] })).tokens.introspect({ token: other.token });
    expect(rpc.inactiveReason).toBe(InactiveReason.UNKNOWN_TOKEN);
  });

  it("takes HTTP Basic with the API key as the password (RFC 6749 §2.3.1)", async () => {
    const t = await issue();
    const res = await post("/oauth2/introspect", `token=${t.token}`, { authorization: basic(issuer.id, issuer.secret) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { active: boolean }).active).toBe(true);
  });

  it("refuses a client without credentials, or with bad ones, as invalid_client with 401 and a challenge", async () => {
    const none = await post("/oauth2/introspect", "token=x", {});
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer /);
    expect(((await none.json()) as { error: string }).error).toBe("invalid_client");

    const badBasic = await post("/oauth2/introspect", "token=x", { authorization: basic(issuer.id, "ak_wrong") });
    expect(badBasic.status).toBe(401);
    expect(badBasic.headers.get("www-authenticate")).toMatch(/^Basic /);
    expect(((await badBasic.json()) as { error: string }).error).toBe("invalid_client");

    const wrongId = await post("/oauth2/introspect", "token=x", { authorization: basic("key_someoneelse", issuer.secret) });
    expect(wrongId.status).toBe(401);
    expect(((await wrongId.json()) as { error_description: string }).error_description).toMatch(/client_id/);
  });

  it("answers bad requests with invalid_request naming the problem", async () => {
    const auth = { authorization: `Bearer ${rsKey}` };
    const cases: [Response, RegExp][] = [
      [await post("/oauth2/introspect", "token_type_hint=access_token", auth), /token is required/],
      [await post("/oauth2/introspect", "token=a&token=b", auth), /token is repeated/],
      [await fetch(base + "/oauth2/introspect", { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: '{"token":"x"}' }), /x-www-form-urlencoded/],
    ];
    for (const [res, why] of cases) {
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: string; error_description: string };
      expect(body.error).toBe("invalid_request");
      expect(body.error_description).toMatch(why);
    }
    const get = await fetch(base + "/oauth2/introspect?token=x", { headers: auth });
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
  });

  it("does not read the body of an unauthenticated request", async () => {
    const big = "token=" + "a".repeat(1024 * 1024);
    const res = await post("/oauth2/introspect", big, {});
    expect(res.status).toBe(401);
    const bigAuthed = await post("/oauth2/introspect", big, { authorization: `Bearer ${rsKey}` });
    expect(bigAuthed.status).toBe(413);
  });
});

describe("POST /oauth2/revoke (RFC 7009)", () => {
  it("revokes with the RFC's example shape (Basic, token_type_hint), and the token is inactive at once", async () => {
    const t = await issue();
    const res = await post("/oauth2/revoke", `token=${t.token}&token_type_hint=refresh_token`, { authorization: basic(issuer.id, issuer.secret) });
    expect(res.status).toBe(200);
    const after = await h.grpc.tokens.introspect({ token: t.token });
    expect(after.inactiveReason).toBe(InactiveReason.REVOKED);
    const entries = h.logs.join("");
    expect(entries).not.toContain(t.token);
  });

  it("refuses an agentid_reason the log cannot take or a terminal would misshow, as invalid_request, and revokes nothing", async () => {
    const auth = { authorization: `Bearer ${issuer.secret}` };
    const t = await issue();
    for (const reason of ["a\u0000b", "x".repeat(513), "line\nforged line", "\u001b[31m", "\u009b", "evil\u202e"]) {
      const res = await post("/oauth2/revoke", new URLSearchParams({ token: t.token, agentid_reason: reason }).toString(), auth);
      expect(res.status, JSON.stringify(reason)).toBe(400);
      const body = (await res.json()) as { error: string; error_description: string };
      expect(body.error).toBe("invalid_request");
      expect(body.error_description).toMatch(/^agentid_reason: /);
    }
    expect((await h.grpc.tokens.introspect({ token: t.token })).active).toBe(true);
    expect((await post("/oauth2/revoke", new URLSearchParams({ token: t.token, agentid_reason: "rotated by CI" }).toString(), auth)).status).toBe(200);
  });

  it("answers 200 for a repeat, an unknown token and the RFC's example string (§2.2)", async () => {
    const t = await issue();
    const auth = { authorization: `Bearer ${issuer.secret}` };
    expect((await post("/oauth2/revoke", `token=${t.token}`, auth)).status).toBe(200);
    expect((await post("/oauth2/revoke", `token=${t.token}`, auth)).status).toBe(200);
    expect((await post("/oauth2/revoke", "token=45ghiukldjahdnhzdauz&token_type_hint=refresh_token", auth)).status).toBe(200);
  });

  it("refuses to revoke an API key here (unsupported_token_type) and refuses resource servers (unauthorized_client)", async () => {
    const key = await post("/oauth2/revoke", `token=${rsKey}`, { authorization: `Bearer ${issuer.secret}` });
    expect(key.status).toBe(400);
    expect(((await key.json()) as { error: string }).error).toBe("unsupported_token_type");
    const t = await issue();
    const rs = await post("/oauth2/revoke", `token=${t.token}`, { authorization: `Bearer ${rsKey}` });
    expect(rs.status).toBe(403);
    expect(((await rs.json()) as { error: string }).error).toBe("unauthorized_client");
    expect((await h.grpc.tokens.introspect({ token: t.token })).active).toBe(true);
  });
});

describe("GET /auth (nginx auth_request), with a plain HTTP client", () => {
  const auth = (headers: Record<string, string>) => fetch(base + "/auth", { headers });

  it("answers 200 with the upstream headers for a valid token, 401 or 403 otherwise", async () => {
    const t = await issue(["orders", "billing"], ["read"]);
    const ok = await auth({ authorization: `Bearer ${t.token}`, "x-agentid-api-key": rsKey, "x-agentid-scope": "read" });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-agentid-agent-id")).toBe(agentId);
    expect(ok.headers.get("x-agentid-token-id")).toBe(t.tokenId);
    expect(ok.headers.get("x-agentid-scopes")).toBe("read");
    const scope = await auth({ authorization: `Bearer ${t.token}`, "x-agentid-api-key": rsKey, "x-agentid-scope": "write" });
    expect(scope.status).toBe(403);
    expect(scope.headers.get("www-authenticate")).toBe('Bearer error="insufficient_scope", scope="write"');
    expect((await auth({ "x-agentid-api-key": rsKey })).status).toBe(401);
    const other = await issue(["billing"]);
    expect((await auth({ authorization: `Bearer ${other.token}`, "x-agentid-api-key": rsKey })).status).toBe(401);
  });

  it("checks the gateway's own key before anything else", async () => {
    const t = await issue();
    const none = await auth({ authorization: `Bearer ${t.token}` });
    expect(none.status).toBe(401);
    expect(await none.text()).toMatch(/X-Agentid-Api-Key/);
    expect((await auth({ authorization: `Bearer ${t.token}`, "x-agentid-api-key": "ak_bogus" })).status).toBe(401);
    expect((await auth({ authorization: `Bearer ${t.token}`, "x-agentid-api-key": issuer.secret })).status).toBe(403);
    const badScope = await auth({ authorization: `Bearer ${t.token}`, "x-agentid-api-key": rsKey, "x-agentid-scope": "a b" });
    expect(badScope.status).toBe(403);
    expect(await badScope.text()).toMatch(/X-Agentid-Scope/);
  });
});
