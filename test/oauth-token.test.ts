// The OAuth token endpoint with real, unmodified clients: openid-client v6, the MCP SDK's
// PrivateKeyJwtProvider, and Python's authlib (Debian's python3-authlib); then every refusal,
// with assertions signed by hand with jose.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT, type JWTPayload } from "jose";
import * as client from "openid-client";
import { PrivateKeyJwtProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { discoverAuthorizationServerMetadata, fetchToken } from "@modelcontextprotocol/sdk/client/auth.js";
import { startHarness, type Harness } from "./support/harness.js";
import { ConfigError, loadConfig } from "../src/server/config.js";
import { defaultIssuer } from "../src/server/oauth-token.js";
import { NGINX, startNginx } from "./support/nginx.js";
import { freePort } from "../bench/lib/cluster.js";
import { mutateBytes, Rng } from "./support/fuzz.js";

let h: Harness;
let issuer: string;

beforeAll(async () => {
  h = await startHarness();
  issuer = h.server.issuer;
});
afterAll(() => h?.close());

interface Agent {
  id: string;
  privateKey: KeyObject;
}

async function agent(allowedScopes = ["read", "write"], allowedAudiences = ["orders", "billing"]): Promise<Agent> {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = new Uint8Array(publicKey.export({ type: "spki", format: "der" }).subarray(-32));
  const r = await h.grpc.agents.registerAgent({ name: "oauth client", publicKey: raw, allowedScopes, allowedAudiences });
  return { id: r.agent!.agentId, privateKey };
}

/** What Introspect (an admin's) says about a token. */
async function introspect(token: string) {
  const r = await h.grpc.tokens.introspect({ token });
  return { active: r.active, scopes: r.scopes, audiences: r.audiences, agentId: r.agentId };
}

/** The agent's token.issued entries in the transparency log. */
async function issuedEntries(agentId: string) {
  const { entries } = await h.grpc.audit.listEntries({ agentId });
  return entries.filter((e) => e.kind === "token.issued").map((e) => ({ actor: e.actor, details: JSON.parse(e.detailsJson) as Record<string, unknown> }));
}

const now = () => Math.floor(Date.now() / 1000);

/** An assertion as RFC 7523 §3 describes it, with any claim or header overridden. */
function assertion(a: Agent, claims: JWTPayload = {}, header: Record<string, unknown> = {}, key: KeyObject = a.privateKey): Promise<string> {
  return new SignJWT({ iss: a.id, sub: a.id, aud: issuer, iat: now(), exp: now() + 60, jti: crypto.randomUUID(), ...claims })
    .setProtectedHeader({ alg: "EdDSA", ...header })
    .sign(key);
}

function post(form: Record<string, string | string[]>, headers: Record<string, string> = {}) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const x of [v].flat()) body.append(k, x);
  return fetch(`${issuer}/oauth2/token`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", ...headers }, body });
}

const clientCredentials = async (a: Agent, extra: Record<string, string | string[]> = {}, claims: JWTPayload = {}) =>
  post({
    grant_type: "client_credentials",
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: await assertion(a, claims),
    ...extra,
  });

describe("RFC 8414 metadata", () => {
  it("names the issuer, the endpoints and what the token endpoint accepts", async () => {
    const res = await fetch(`${issuer}/.well-known/oauth-authorization-server`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toMatchObject({
      issuer,
      token_endpoint: `${issuer}/oauth2/token`,
      introspection_endpoint: `${issuer}/oauth2/introspect`,
      revocation_endpoint: `${issuer}/oauth2/revoke`,
      grant_types_supported: ["client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
      token_endpoint_auth_methods_supported: ["private_key_jwt"],
      token_endpoint_auth_signing_alg_values_supported: ["EdDSA", "Ed25519"],
    });
    expect(issuer).toBe(`http://127.0.0.1:${h.server.httpPort}`);
    // Public, for browser-based clients too; HEAD answers without a body.
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    const head = await fetch(`${issuer}/.well-known/oauth-authorization-server`, { method: "HEAD" });
    expect([head.status, await head.text()]).toEqual([200, ""]);
    expect((await fetch(`${issuer}/.well-known/oauth-authorization-server`, { method: "POST" })).status).toBe(405);
  });

  it("takes AGENTID_ISSUER as clients compare it, and otherwise the listen address", () => {
    expect(loadConfig({ AGENTID_ISSUER: "https://ID.example.com/" }).issuer).toBe("https://id.example.com");
    expect(loadConfig({ AGENTID_ISSUER: "https://id.example.com/agentid/" }).issuer).toBe("https://id.example.com/agentid");
    for (const bad of ["id.example.com", "ftp://id.example.com", "https://id.example.com/?x=1", "https://id.example.com/#f", "https://u:p@id.example.com"]) {
      expect(() => loadConfig({ AGENTID_ISSUER: bad }), bad).toThrow(ConfigError);
    }
    expect(defaultIssuer("127.0.0.1", 8080)).toBe("http://127.0.0.1:8080");
    expect(defaultIssuer("0.0.0.0", 8080)).toBe("http://127.0.0.1:8080");
    expect(defaultIssuer("::1", 8080)).toBe("http://[::1]:8080");
  });

  it("names the authorization endpoint, which says there is no interactive flow", async () => {
    const res = await fetch(`${issuer}/oauth2/authorize?response_type=code&client_id=x`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: "unsupported_response_type" });
  });
});

describe("real clients, unmodified", () => {
  it("openid-client v6: discovery, then clientCredentialsGrant with PrivateKeyJwt and a resource", async () => {
    const a = await agent();
    const privateKey = await crypto.subtle.importKey("jwk", a.privateKey.export({ format: "jwk" }), { name: "Ed25519" }, false, ["sign"]);
    // docs/oauth.md: openid-client
    const config = await client.discovery(new URL(issuer), a.id, undefined, client.PrivateKeyJwt(privateKey), {
      algorithm: "oauth2",
      execute: [client.allowInsecureRequests], // http:// in this test; drop it for https
    });
    const tokens = await client.clientCredentialsGrant(config, { scope: "read", resource: "orders" });
    // end docs/oauth.md
    expect(tokens.token_type).toBe("bearer");
    expect(tokens.scope).toBe("read");
    expect(tokens.expires_in).toBe(3600);
    expect(await introspect(tokens.access_token)).toEqual({ active: true, scopes: ["read"], audiences: ["orders"], agentId: a.id });
  });

  it("the MCP SDK's PrivateKeyJwtProvider (EdDSA, aud = the issuer, no client_id in the body)", async () => {
    const a = await agent();
    const other = new PrivateKeyJwtProvider({ clientId: a.id, privateKey: a.privateKey.export({ format: "jwk" }) as Record<string, unknown>, algorithm: "EdDSA", expectedIssuer: issuer });
    const refused = await fetchToken(other, issuer, { metadata: await discoverAuthorizationServerMetadata(issuer), resource: new URL("https://mcp.example.com/mcp") }).catch((e: Error) => e);
    // The resource is not among that agent's audiences: RFC 8707's error, through the SDK.
    expect(String(refused)).toMatch(/audiences https:\/\/mcp\.example\.com\/mcp are not among agent agt_\w+'s allowed audiences/);
    const b = await agent(["read"], ["https://mcp.example.com/mcp"]);
    const agentId = b.id;
    const jwk = b.privateKey.export({ format: "jwk" }) as Record<string, unknown>;
    // docs/oauth.md: mcp
    const provider = new PrivateKeyJwtProvider({ clientId: agentId, privateKey: jwk, algorithm: "EdDSA", expectedIssuer: issuer });
    const metadata = await discoverAuthorizationServerMetadata(issuer);
    const tokens = await fetchToken(provider, issuer, { metadata, resource: new URL("https://mcp.example.com/mcp") });
    // end docs/oauth.md
    expect(tokens.token_type).toBe("Bearer");
    expect(await introspect(tokens.access_token)).toEqual({ active: true, scopes: ["read"], audiences: ["https://mcp.example.com/mcp"], agentId });
  });

  const python = "/usr/bin/python3";
  const authlib = existsSync(python) && spawnSync(python, ["-c", "import authlib, requests"]).status === 0;
  if (!authlib) console.warn("test/oauth-token.test.ts: authlib skipped: install python3-authlib (.ci/run does)");
  it.skipIf(!authlib)("Python authlib's PrivateKeyJWT (aud = the token endpoint, exp an hour away)", async () => {
    const a = await agent();
    const pem = a.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    const script = `
import json, sys
# docs/oauth.md: authlib
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT

agent_id, private_key_pem, token_endpoint = sys.argv[1], sys.stdin.read(), sys.argv[2]
session = OAuth2Session(
    agent_id, private_key_pem,
    token_endpoint_auth_method=PrivateKeyJWT(token_endpoint, alg="EdDSA"),
    scope="read write",
)
token = session.fetch_token(token_endpoint, grant_type="client_credentials", resource="billing")
# end docs/oauth.md
print(json.dumps(token))
`;
    // Asynchronously: the server answering it runs in this process.
    const r = await new Promise<{ stdout: string; stderr: string; error: Error | null }>((resolve) => {
      const p = execFile(python, ["-c", script, a.id, `${issuer}/oauth2/token`], { timeout: 30_000 }, (error, stdout, stderr) => resolve({ error, stdout, stderr }));
      p.stdin!.end(pem);
    });
    expect(r.stderr + (r.error?.message ?? "")).toBe("");
    const token = JSON.parse(r.stdout) as { access_token: string; token_type: string; scope: string };
    expect(token).toMatchObject({ token_type: "Bearer", scope: "read write" });
    expect(await introspect(token.access_token)).toEqual({ active: true, scopes: ["read", "write"], audiences: ["billing"], agentId: a.id });
  });
});

describe("POST /oauth2/token", () => {
  it("answers RFC 6749 §5.1: a Bearer at_ token, expires_in, scope, no-store; the log names the grant", async () => {
    const a = await agent();
    const res = await clientCredentials(a, { scope: "write", resource: ["orders", "billing"] });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({ access_token: expect.stringMatching(/^at_/), token_type: "Bearer", expires_in: 3600, scope: "write" });
    expect(await introspect(body.access_token as string)).toEqual({ active: true, scopes: ["write"], audiences: ["orders", "billing"], agentId: a.id });
    const [issued] = await issuedEntries(a.id);
    expect(issued!.actor).toBe(`agent:${a.id}`);
    expect(issued!.details).toMatchObject({ grant: "client_credentials", scopes: ["write"], audiences: ["orders", "billing"] });
  });

  it("gives a request without scope or resource every scope and audience the agent is allowed", async () => {
    const a = await agent(["read", "write"], ["orders", "billing"]);
    const body = (await (await clientCredentials(a)).json()) as { access_token: string; scope: string };
    expect(body.scope).toBe("read write");
    expect(await introspect(body.access_token)).toEqual({ active: true, scopes: ["read", "write"], audiences: ["orders", "billing"], agentId: a.id });
    // And one registered with none gets none (deny by default).
    const bare = await agent([], []);
    const none = (await (await clientCredentials(bare)).json()) as { access_token: string; scope: string };
    expect(none.scope).toBe("");
    expect(await introspect(none.access_token)).toMatchObject({ active: true, scopes: [], audiences: [] });
  });

  it("takes the jwt-bearer grant (RFC 7523 §2.1), aud = the token endpoint, and logs that grant", async () => {
    const a = await agent();
    const res = await post({
      grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
      assertion: await assertion(a, { aud: `${issuer}/oauth2/token` }),
      scope: "read",
      resource: "orders",
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { access_token: string };
    expect(await introspect(body.access_token)).toEqual({ active: true, scopes: ["read"], audiences: ["orders"], agentId: a.id });
    const [issued] = await issuedEntries(a.id);
    expect(issued!.details).toMatchObject({ grant: "urn:ietf:params:oauth:grant-type:jwt-bearer" });
  });

  it("refuses a replayed assertion, on the second use", async () => {
    const a = await agent();
    const form = {
      grant_type: "client_credentials",
      client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
      client_assertion: await assertion(a),
    };
    expect((await post(form)).status).toBe(200);
    const again = await post(form);
    expect(again.status).toBe(401);
    expect(await again.json()).toEqual({ error: "invalid_client", error_description: "the assertion was already used (replayed jti)" });
  });

  it("refuses the next grant once the agent is killed: invalid_grant", async () => {
    const a = await agent();
    expect((await clientCredentials(a)).status).toBe(200);
    await h.grpc.tokens.revoke({ target: { case: "agentId", value: a.id }, reason: "rogue" });
    for (const res of [await clientCredentials(a), await post({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion: await assertion(a) })]) {
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: "invalid_grant", error_description: `agent ${a.id} is revoked; register a new agent` });
    }
  });

  it("gives each bad assertion its own error: wrong key, wrong aud, expired, stale iat, alg, other agent", async () => {
    const a = await agent();
    const other = await agent();
    const cases: [string, () => Promise<string>, RegExp][] = [
      ["wrong key", () => assertion(a, {}, {}, generateKeyPairSync("ed25519").privateKey), /signature does not verify with agent agt_\w+'s registered key/],
      ["wrong aud", () => assertion(a, { aud: "https://elsewhere.example" }), /aud must be http:\/\/127\.0\.0\.1:\d+ or http:\/\/127\.0\.0\.1:\d+\/oauth2\/token$/],
      ["expired", () => assertion(a, { iat: now() - 30, exp: now() - 3600 }), /has expired/],
      ["stale iat", () => assertion(a, { iat: now() - 600, exp: now() + 600 }), /iat is more than 60s from the server's clock/],
      ["no jti", () => assertion(a, { jti: undefined }), /jti claim is missing/],
      ["HS256", () => new SignJWT({ iss: a.id, sub: a.id, aud: issuer, iat: now(), exp: now() + 60, jti: "x" }).setProtectedHeader({ alg: "HS256" }).sign(new Uint8Array(32)), /alg must be EdDSA or Ed25519/],
      ["sub is another agent", () => assertion(a, { sub: other.id }), /sub must equal its iss/],
      ["signed by another agent", () => assertion(a, {}, {}, other.privateKey), /signature does not verify/],
      ["not a JWT", async () => "not.a.jwt", /not a JWT/],
    ];
    for (const [name, make, why] of cases) {
      const res = await post({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: await make() });
      const body = (await res.json()) as { error: string; error_description: string };
      expect([name, res.status, body.error]).toEqual([name, 401, "invalid_client"]);
      expect(body.error_description, name).toMatch(why);
      expect(res.headers.get("www-authenticate"), name).toMatch(/^Bearer realm="agentid", error="invalid_client"/);
      // The same assertion as a jwt-bearer grant is invalid_grant (RFC 7521 §4.1.1).
      const grant = await post({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion: await make() });
      expect([name, grant.status, ((await grant.json()) as { error: string }).error]).toEqual([name, 400, "invalid_grant"]);
    }
  });

  it("answers a header naming made-up critical parameters with invalid_client, never a broken header", async () => {
    const a = await agent();
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const odd = "\u00e9\r\nx-injected: 1";
    const input = `${b64({ alg: "EdDSA", crit: [odd], [odd]: true })}.${b64({ iss: a.id, sub: a.id, aud: issuer, iat: now(), exp: now() + 60, jti: "crit" })}`;
    const jws = `${input}.${sign(null, Buffer.from(input), a.privateKey).toString("base64url")}`;
    const res = await post({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: jws });
    expect(res.status).toBe(401);
    expect(res.headers.get("x-injected")).toBeNull();
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer realm="agentid", error="invalid_client", error_description="[^"]*not recognized[^"]*"$/);
    expect(((await res.json()) as { error_description: string }).error_description).toContain(odd);
  });

  it("refuses a scope or a resource outside the agent's allowance with invalid_scope and invalid_target", async () => {
    const a = await agent(["read"], ["orders"]);
    const scope = await clientCredentials(a, { scope: "read admin" });
    expect(scope.status).toBe(400);
    expect(await scope.json()).toEqual({ error: "invalid_scope", error_description: `scopes admin are not among agent ${a.id}'s allowed scopes (read)` });
    const target = await clientCredentials(a, { resource: ["orders", "billing"] });
    expect(target.status).toBe(400);
    expect(await target.json()).toEqual({ error: "invalid_target", error_description: `audiences billing are not among agent ${a.id}'s allowed audiences (orders)` });
    const long = await clientCredentials(a, { scope: "x".repeat(200) });
    expect(await long.json()).toMatchObject({ error: "invalid_scope", error_description: "scope[0]: must be 1 to 128 printable characters without spaces" });
    // Nothing was issued for any of them.
    expect(await issuedEntries(a.id)).toEqual([]);
  });

  it("answers malformed requests with RFC 6749 errors, never a 500", async () => {
    const a = await agent();
    const cases: [Promise<Response>, number, string][] = [
      [post({}), 400, "invalid_request"],
      [post({ grant_type: "password", username: "u", password: "p" }), 400, "unsupported_grant_type"],
      [post({ grant_type: "client_credentials" }), 401, "invalid_client"],
      [post({ grant_type: "client_credentials", client_id: a.id, client_secret: "s3cret" }), 401, "invalid_client"],
      [post({ grant_type: "client_credentials", client_assertion_type: "urn:x", client_assertion: await assertion(a) }), 401, "invalid_client"],
      [post({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: await assertion(a), client_id: "agt_0000000000000000000000" }), 401, "invalid_client"],
      [post({ grant_type: ["client_credentials", "client_credentials"] }), 400, "invalid_request"],
      [post({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer" }), 400, "invalid_request"],
      [post({ grant_type: "client_credentials" }, { authorization: "Basic YTpi" }), 401, "invalid_client"],
      [fetch(`${issuer}/oauth2/token`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }), 400, "invalid_request"],
      [fetch(`${issuer}/oauth2/token`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "a=" + "x".repeat(20_000) }), 413, "invalid_request"],
      [fetch(`${issuer}/oauth2/token`), 405, "invalid_request"],
    ];
    for (const [i, [res, status, error]] of cases.entries()) {
      const r = await res;
      expect([i, r.status, ((await r.json()) as { error: string }).error]).toEqual([i, status, error]);
    }
  });
});

describe("fuzzed", () => {
  it("answers 600 mangled requests and oddly typed claims with RFC errors, never a 500", async () => {
    const a = await agent();
    const rng = new Rng(2612);
    const odd = [null, 0, -1, 1e308, "", "x".repeat(5000), {}, [], true, "\u0000", ["a", 1], a.id];
    const claims = ["iss", "sub", "aud", "iat", "exp", "nbf", "jti"];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 600; i++) {
      let body: Uint8Array;
      if (i % 2 === 0) {
        // A well-signed assertion with one claim or header field made odd.
        const header = rng.chance(0.2) ? { [rng.pick(["alg", "typ", "crit", "kid", "b64"])]: rng.pick(odd) } : {};
        let jwt: string;
        try {
          jwt = await assertion(a, { [rng.pick(claims)]: rng.pick(odd) as never }, header);
        } catch {
          continue; // jose refuses to sign it (an alg it does not know): nothing to send
        }
        const grant: Record<string, string> = rng.chance(0.5)
          ? { grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: jwt }
          : { grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion: jwt };
        body = new TextEncoder().encode(new URLSearchParams(grant).toString());
      } else {
        // A good request's bytes, mangled.
        const good = `grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=${await assertion(a)}&scope=read&resource=orders`;
        body = mutateBytes(new TextEncoder().encode(good), rng);
      }
      const res = await fetch(`${issuer}/oauth2/token`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body });
      const json = (await res.json()) as { error?: string };
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      expect(res.status, JSON.stringify(json)).toBeLessThan(500);
      if (res.status !== 200) expect(json.error).toMatch(/^[a-z_]+$/);
    }
    // A few stay good (a flipped bit after the assertion, or an "odd" value that is a fine one):
    // those are real grants. The rest reached the checks and were refused.
    expect((statuses.get(400) ?? 0) + (statuses.get(401) ?? 0)).toBeGreaterThan(450);
  });
});

describe("the per-peer limits", () => {
  it("refuses a peer whose assertions keep failing, before reading its next request", async () => {
    const limited = await startHarness({ config: { authFailuresPerMinute: 3 } });
    try {
      const base = limited.server.issuer;
      const { publicKey, privateKey } = generateKeyPairSync("ed25519");
      const raw = new Uint8Array(publicKey.export({ type: "spki", format: "der" }).subarray(-32));
      const id = (await limited.grpc.agents.registerAgent({ name: "limited", publicKey: raw })).agent!.agentId;
      const bad = () =>
        new SignJWT({ iss: id, sub: id, aud: base, iat: now(), exp: now() + 60, jti: crypto.randomUUID() }).setProtectedHeader({ alg: "EdDSA" }).sign(generateKeyPairSync("ed25519").privateKey);
      const send = async (a: string) =>
        fetch(`${base}/oauth2/token`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion: a }),
        });
      for (let i = 0; i < 3; i++) expect((await send(await bad())).status).toBe(400);
      const refused = await send(await new SignJWT({ iss: id, sub: id, aud: base, iat: now(), exp: now() + 60, jti: "good" }).setProtectedHeader({ alg: "EdDSA" }).sign(privateKey));
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(await refused.json()).toMatchObject({ error: "temporarily_unavailable", error_description: expect.stringMatching(/too many failed authentications/) });
    } finally {
      await limited.close();
    }
  });
});

describe("docs/oauth.md", () => {
  it("shows the clients' snippets exactly as this file runs them", async () => {
    const doc = await readFile(new URL("../docs/oauth.md", import.meta.url), "utf8");
    const source = await readFile(new URL(import.meta.url), "utf8");
    const snippets = [...source.matchAll(/^[ \t]*(?:\/\/|#) docs\/oauth\.md: [\w-]+\n([\s\S]*?)^[ \t]*(?:\/\/|#) end docs\/oauth\.md$/gm)].map((m) => {
      const lines = m[1]!.trimEnd().split("\n");
      const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => /^ */.exec(l)![0].length));
      return lines.map((l) => l.slice(indent)).join("\n");
    });
    expect(snippets).toHaveLength(3);
    for (const s of snippets) expect(doc).toContain(s);
  });
});

if (!NGINX) console.warn("test/oauth-token.test.ts: the proxy case skipped: no nginx binary (apt-get install -y nginx-light; .ci/run does)");
describe.skipIf(!NGINX)("behind a proxy, with AGENTID_ISSUER under a path", () => {
  it("openid-client discovers the issuer at the proxy's URL and gets a token through it (docs/oauth.md's nginx block)", async () => {
    const port = await freePort();
    const publicIssuer = `http://127.0.0.1:${port}/agentid`;
    const proxied = await startHarness({ config: { issuer: publicIssuer } });
    const dir = await mkdtemp(join(tmpdir(), "agentid-oauth-nginx-"));
    let nginx: Awaited<ReturnType<typeof startNginx>> | undefined;
    try {
      const doc = await readFile(new URL("../docs/oauth.md", import.meta.url), "utf8");
      const block = /```nginx\n([\s\S]*?)```/.exec(doc)![1]!.replace(/127\.0\.0\.1:8080/g, `127.0.0.1:${proxied.server.httpPort}`);
      await writeFile(
        join(dir, "nginx.conf"),
        `daemon off; master_process off; pid ${dir}/nginx.pid; error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
${block}
  }
}
`,
      );
      nginx = await startNginx(dir, port);
      expect(proxied.server.issuer).toBe(publicIssuer);
      const { publicKey, privateKey } = generateKeyPairSync("ed25519");
      const raw = new Uint8Array(publicKey.export({ type: "spki", format: "der" }).subarray(-32));
      const id = (await proxied.grpc.agents.registerAgent({ name: "proxied", publicKey: raw, allowedScopes: ["read"], allowedAudiences: ["orders"] })).agent!.agentId;
      const key = await crypto.subtle.importKey("jwk", privateKey.export({ format: "jwk" }), { name: "Ed25519" }, false, ["sign"]);
      const config = await client.discovery(new URL(publicIssuer), id, undefined, client.PrivateKeyJwt(key), { algorithm: "oauth2", execute: [client.allowInsecureRequests] });
      expect(config.serverMetadata().token_endpoint).toBe(`${publicIssuer}/oauth2/token`);
      const tokens = await client.clientCredentialsGrant(config, { resource: "orders" });
      const r = await proxied.grpc.tokens.introspect({ token: tokens.access_token });
      expect([r.active, r.agentId, r.audiences]).toEqual([true, id, ["orders"]]);
      // An assertion made for the listen address is not one for this issuer.
      const direct = await new SignJWT({ iss: id, sub: id, aud: `http://127.0.0.1:${proxied.server.httpPort}`, iat: now(), exp: now() + 60, jti: "direct-aud" })
        .setProtectedHeader({ alg: "EdDSA" })
        .sign(privateKey);
      const res = await fetch(`${publicIssuer}/oauth2/token`, { method: "POST", body: new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion: direct }) });
      expect(((await res.json()) as { error_description: string }).error_description).toBe(
        `the assertion's aud must be ${publicIssuer} or ${publicIssuer}/oauth2/token`,
      );
    } finally {
      await nginx?.stop();
      await proxied.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
