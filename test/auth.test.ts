import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Role } from "../gen/agentid/v1/key_pb.js";
import { PolicyKind } from "../gen/agentid/v1/policy_pb.js";
import { ActivityKind } from "../gen/agentid/v1/activity_pb.js";
import { InactiveReason, IssueRequestSchema } from "../gen/agentid/v1/token_pb.js";
import { AgentStatus } from "../gen/agentid/v1/agent_pb.js";
import { createConnectTransport } from "@connectrpc/connect-node";
import { bearer, clientsFor, publicKey, startHarness, type Clients, type Harness } from "./support/harness.js";
import { StreamRecorder } from "./support/feed.js";
import { signedIssueRequest } from "../src/client/self-issue.js";
import { API_KEY_PREFIX, newSecret, newToken } from "../src/domain/ids.js";

let h: Harness;
let issuerKey: string;
let rsKey: string;
beforeAll(async () => {
  h = await startHarness();
  issuerKey = (await admin().keys.createApiKey({ name: "ci issuer", role: Role.ISSUER })).secret;
  rsKey = (await admin().keys.createApiKey({ name: "orders api", role: Role.RESOURCE_SERVER, audiences: ["orders"] })).secret;
});
afterAll(() => h?.close());

/** Every service's client over Connect with the given key, or a raw authorization header. */
function clientsWith(key: string | undefined, header?: string) {
  const transport = createConnectTransport({
    baseUrl: `http://127.0.0.1:${h.server.httpPort}`,
    httpVersion: "1.1",
    interceptors: header ? [(next) => (req) => (req.header.set("authorization", header), next(req))] : key ? [bearer(key)] : [],
  });
  return clientsFor(transport);
}
const admin = () => clientsWith(h.adminKey);

async function codeOf(p: Promise<unknown> | AsyncIterable<unknown>): Promise<Code | "ok"> {
  try {
    if (Symbol.asyncIterator in p) {
      for await (const _ of p) break;
    } else await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

function agentKeys(): { publicKey: Uint8Array; privateKey: KeyObject } {
  const { publicKey: pub, privateKey } = generateKeyPairSync("ed25519");
  return { publicKey: new Uint8Array(pub.export({ type: "spki", format: "der" }).subarray(-32)), privateKey };
}

type AnyClients = ReturnType<typeof clientsWith>;
type Rpc = [string, (c: AnyClients) => Promise<unknown> | AsyncIterable<unknown>];

// One call per RPC; arguments only need to get past authorization.
const rpcs = (agentId: string): Rpc[] => [
  ["AgentService.RegisterAgent", (c) => c.agents.registerAgent({ name: "m", publicKey: publicKey() })],
  ["AgentService.GetAgent", (c) => c.agents.getAgent({ agentId })],
  ["AgentService.ListAgents", (c) => c.agents.listAgents({})],
  ["TokenService.Issue", (c) => c.tokens.issue({ agentId })],
  ["TokenService.Introspect", (c) => c.tokens.introspect({ token: newToken() })],
  ["TokenService.Revoke", (c) => c.tokens.revoke({ target: { case: "token", value: newToken() }, reason: "x" })],
  ["RevocationService.WatchRevocations", (c) => c.revocations.watchRevocations({})],
  ["KeyService.CreateApiKey", (c) => c.keys.createApiKey({ name: "k", role: Role.ISSUER })],
  ["KeyService.ListApiKeys", (c) => c.keys.listApiKeys({})],
  ["KeyService.RevokeApiKey", (c) => c.keys.revokeApiKey({ keyId: "key_0000000000000000000000" })],
  ["KeyService.GetCurrentPrincipal", (c) => c.keys.getCurrentPrincipal({})],
  ["PolicyService.CreatePolicy", (c) => c.policies.createPolicy({ policy: { name: `p${Math.random().toString(36).slice(2, 8)}`, kind: PolicyKind.TRUST_BELOW, threshold: 1 } })],
  ["PolicyService.ListPolicies", (c) => c.policies.listPolicies({})],
  ["PolicyService.DeletePolicy", (c) => c.policies.deletePolicy({ name: "absent" })],
  ["ActivityService.ReportActivity", (c) => c.activity.reportActivity({ agentId, kind: ActivityKind.ANOMALOUS_REQUEST })],
  ["ActivityService.GetTrustScore", (c) => c.activity.getTrustScore({ agentId })],
  ["ActivityService.ListTrustScores", (c) => c.activity.listTrustScores({ agentId })],
  ["ActivityService.ReportUsage", (c) => c.activity.reportUsage({})],
  ["ActivityService.GetActivity", (c) => c.activity.getActivity({ agentId })],
  ["AuditService.GetCheckpoint", (c) => c.audit.getCheckpoint({})],
  ["AuditService.GetInclusionProof", (c) => c.audit.getInclusionProof({ leafIndex: 0n })],
  ["AuditService.GetConsistencyProof", (c) => c.audit.getConsistencyProof({ firstTreeSize: 1n, secondTreeSize: 1n })],
  ["AuditService.ListEntries", (c) => c.audit.listEntries({})],
  ["AuditService.GetPublicKey", (c) => c.audit.getPublicKey({})],
  ["AuditService.ListCheckpoints", (c) => c.audit.listCheckpoints({})],
];

// The authorization matrix: which roles may call what.
const allowed: Record<string, ("admin" | "issuer" | "resource_server")[]> = {
  "AgentService.RegisterAgent": ["admin", "issuer"],
  "AgentService.GetAgent": ["admin", "issuer"],
  "AgentService.ListAgents": ["admin", "issuer"],
  "TokenService.Issue": ["admin", "issuer"],
  "TokenService.Introspect": ["admin", "issuer", "resource_server"],
  "TokenService.Revoke": ["admin", "issuer"],
  "RevocationService.WatchRevocations": ["admin", "resource_server"],
  "KeyService.CreateApiKey": ["admin"],
  "KeyService.ListApiKeys": ["admin"],
  "KeyService.RevokeApiKey": ["admin"],
  "KeyService.GetCurrentPrincipal": ["admin", "issuer", "resource_server"],
  "PolicyService.CreatePolicy": ["admin"],
  "PolicyService.ListPolicies": ["admin"],
  "PolicyService.DeletePolicy": ["admin"],
  "ActivityService.ReportActivity": ["admin", "resource_server"],
  "ActivityService.GetTrustScore": ["admin", "issuer"],
  "ActivityService.ListTrustScores": ["admin", "issuer"],
  "ActivityService.ReportUsage": ["admin", "resource_server"],
  "ActivityService.GetActivity": ["admin", "issuer"],
  "AuditService.GetCheckpoint": ["admin", "issuer", "resource_server"],
  "AuditService.GetInclusionProof": ["admin", "issuer", "resource_server"],
  "AuditService.GetConsistencyProof": ["admin", "issuer", "resource_server"],
  "AuditService.ListEntries": ["admin", "issuer", "resource_server"],
  "AuditService.GetPublicKey": ["admin", "issuer", "resource_server"],
  "AuditService.ListCheckpoints": ["admin", "issuer", "resource_server"],
};

describe("caller authentication", () => {
  it("covers every RPC of every service in the matrix", async () => {
    const { routes } = await import("../src/server/services.js");
    const all = routes(h.ctx).flatMap((r) => r.service.methods.map((m) => `${r.service.name}.${m.name}`));
    expect(all.sort()).toEqual(Object.keys(allowed).sort());
  });

  it.each([
    ["no credentials", undefined],
    ["a malformed key", "Bearer not-a-key"],
    ["an unknown key", `Bearer ${newSecret(API_KEY_PREFIX)}`],
    ["a token instead of a key", `Bearer ${newToken()}`],
    ["the wrong scheme", "Basic dXNlcjpwYXNz"],
  ])("refuses %s on every RPC with UNAUTHENTICATED", async (_what, header) => {
    const agentId = (await admin().agents.registerAgent({ name: "a", publicKey: publicKey() })).agent!.agentId;
    const c = clientsWith(undefined, header);
    for (const [name, call] of rpcs(agentId)) expect(await codeOf(call(c)), name).toBe(Code.Unauthenticated);
    // gRPC too.
    expect(await codeOf(h.as(undefined).grpc.agents.listAgents({}))).toBe(Code.Unauthenticated);
  });

  it.each(["admin", "issuer", "resource_server"] as const)("lets %s call exactly what the matrix allows", async (role) => {
    const key = { admin: h.adminKey, issuer: issuerKey, resource_server: rsKey }[role];
    const agentId = (await admin().agents.registerAgent({ name: "m", publicKey: publicKey() })).agent!.agentId;
    const c = clientsWith(key);
    for (const [name, call] of rpcs(agentId)) {
      const code = await codeOf(call(c));
      if (allowed[name]!.includes(role)) expect([Code.PermissionDenied, Code.Unauthenticated], `${role} ${name}`).not.toContain(code);
      else expect(code, `${role} ${name}`).toBe(Code.PermissionDenied);
    }
  });

  it("authenticates a call once: the handler trusts what the transport admitted from the headers", async () => {
    const auth = h.ctx.auth;
    const original = auth.authenticate.bind(auth);
    let calls = 0;
    auth.authenticate = (...args) => (calls++, original(...args));
    try {
      for (const c of [h.grpc, h.connect]) {
        calls = 0;
        expect((await c.agents.listAgents({})).agents).toBeDefined();
        expect(calls).toBe(1);
      }
    } finally {
      auth.authenticate = original;
    }
  });

  it("stops a revoked key at once", async () => {
    const { key, secret } = await admin().keys.createApiKey({ name: "short-lived", role: Role.ISSUER });
    const c = clientsWith(secret);
    expect(await codeOf(c.agents.listAgents({}))).toBe("ok");
    const listed = await admin().keys.listApiKeys({});
    expect(listed.keys.find((k) => k.keyId === key!.keyId)).toMatchObject({ name: "short-lived", role: Role.ISSUER });
    expect(JSON.stringify(listed.keys, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(secret.slice(3));
    await admin().keys.revokeApiKey({ keyId: key!.keyId });
    expect(await codeOf(c.agents.listAgents({}))).toBe(Code.Unauthenticated);
  });

  it("needs audiences for resource server keys and none for others", async () => {
    expect(await codeOf(admin().keys.createApiKey({ name: "rs", role: Role.RESOURCE_SERVER }))).toBe(Code.InvalidArgument);
    expect(await codeOf(admin().keys.createApiKey({ name: "i", role: Role.ISSUER, audiences: ["x"] }))).toBe(Code.InvalidArgument);
    expect(await codeOf(admin().keys.createApiKey({ name: "r", role: Role.UNSPECIFIED }))).toBe(Code.InvalidArgument);
  });
});

describe("a resource server", () => {
  it("introspects only tokens for its audience; others look exactly like unknown tokens", async () => {
    const agentId = (await admin().agents.registerAgent({ name: "aud", publicKey: publicKey(), allowedAudiences: ["orders", "billing"] })).agent!.agentId;
    const mine = await admin().tokens.issue({ agentId, audiences: ["orders"] });
    const theirs = await admin().tokens.issue({ agentId, audiences: ["billing"] });
    const rs = clientsWith(rsKey);
    expect((await rs.tokens.introspect({ token: mine.token })).active).toBe(true);
    const hidden = await rs.tokens.introspect({ token: theirs.token });
    const unknown = await rs.tokens.introspect({ token: newToken() });
    expect({ ...hidden, revision: 0n }).toEqual({ ...unknown, revision: 0n });
    expect(hidden.inactiveReason).toBe(InactiveReason.UNKNOWN_TOKEN);
    // Even revoked, a foreign token reveals nothing.
    await admin().tokens.revoke({ target: { case: "tokenId", value: theirs.tokenId }, reason: "x" });
    expect((await rs.tokens.introspect({ token: theirs.token })).inactiveReason).toBe(InactiveReason.UNKNOWN_TOKEN);
  });
});

describe("an agent proving possession of its key", () => {
  async function registered(allowedScopes: string[], allowedAudiences: string[] = []) {
    const keys = agentKeys();
    const { agent } = await admin().agents.registerAgent({ name: "self", publicKey: keys.publicKey, allowedScopes, allowedAudiences });
    return { agentId: agent!.agentId, deploymentId: agent!.deploymentId, ...keys };
  }

  it("issues its own token with no API key, within its allowed scopes", async () => {
    const a = await registered(["orders:read", "orders:write"], ["orders"]);
    const anon = h.as(undefined);
    for (const c of [anon.grpc, anon.connect]) {
      const req = signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes: ["orders:read"], audiences: ["orders"], ttlMs: 60_000 });
      const res = await c.tokens.issue(req);
      const r = await admin().tokens.introspect({ token: res.token });
      expect(r).toMatchObject({ active: true, agentId: a.agentId, scopes: ["orders:read"] });
    }
    expect((await admin().agents.getAgent({ agentId: a.agentId })).agent?.allowedScopes).toEqual(["orders:read", "orders:write"]);
  });

  it("cannot replay a signed request", async () => {
    const a = await registered(["s"]);
    const req = signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes: ["s"] });
    const anon = h.as(undefined).connect;
    await anon.tokens.issue(req);
    const err = ConnectError.from(await anon.tokens.issue(req).catch((e) => e));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain("already used");
  });

  it("cannot issue for another agent, beyond its scopes, with a stale or altered request", async () => {
    const a = await registered(["s"]);
    const b = await registered(["s"]);
    const anon = h.as(undefined).grpc;
    const codeOfIssue = (req: Parameters<Clients["tokens"]["issue"]>[0]) => codeOf(anon.tokens.issue(req));

    // Signed by A's key for B's id.
    expect(await codeOfIssue(signedIssueRequest({ deploymentId: a.deploymentId, agentId: b.agentId, privateKey: a.privateKey, scopes: ["s"] }))).toBe(Code.Unauthenticated);
    // Beyond the allowed scopes.
    expect(await codeOfIssue(signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes: ["admin"] }))).toBe(Code.PermissionDenied);
    // Altered after signing.
    const altered = signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes: ["s"] });
    altered.audiences = ["elsewhere"];
    expect(await codeOfIssue(altered)).toBe(Code.Unauthenticated);
    // Outside the clock-skew bound: re-sign with an old timestamp.
    const { issuePayload } = await import("../src/domain/proof.js");
    const { sign } = await import("node:crypto");
    const old = Date.now() - 5 * 60_000;
    const nonce = "n".repeat(20);
    const stale = create(IssueRequestSchema, {
      agentId: a.agentId,
      scopes: ["s"],
      proof: {
        signedAt: timestampFromMs(old),
        nonce,
        signature: sign(null, issuePayload({ deploymentId: a.deploymentId, agentId: a.agentId, scopes: ["s"], audiences: [], ttlMs: 0, signedAtMs: old, nonce }), a.privateKey),
      },
    });
    const err = ConnectError.from(await anon.tokens.issue(stale).catch((e) => e));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain("signed_at");
    // No proof, no key.
    expect(await codeOfIssue({ agentId: a.agentId })).toBe(Code.Unauthenticated);
  });

  it("is refused once killed", async () => {
    const a = await registered(["s"]);
    await admin().tokens.revoke({ target: { case: "agentId", value: a.agentId }, reason: "x" });
    expect(await codeOf(h.as(undefined).grpc.tokens.issue(signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes: ["s"] })))).toBe(
      Code.FailedPrecondition,
    );
  });
});

describe("the kill switch", () => {
  it("stops one agent among many, records who did it, and sends one event", async () => {
    const fleet = await Promise.all(Array.from({ length: 40 }, (_, i) => admin().agents.registerAgent({ name: `fleet-${i}`, publicKey: publicKey() })));
    const tokens = await Promise.all(fleet.flatMap((a) => [1, 2].map(() => admin().tokens.issue({ agentId: a.agent!.agentId }))));
    const rec = new StreamRecorder(h.grpc, 0n);
    await rec.until((r) => r.progress.length > 0);
    const before = rec.revisions.length;

    const target = fleet[17]!.agent!.agentId;
    const onCall = await admin().keys.createApiKey({ name: "on-call", role: Role.ISSUER });
    const res = await clientsWith(onCall.secret).tokens.revoke({ target: { case: "agentId", value: target }, reason: "prompt injection" });
    expect(res.tokensRevoked).toBe(2n);

    const answers = await Promise.all(tokens.map((t) => admin().tokens.introspect({ token: t.token })));
    answers.forEach((a, i) => expect(a.active, `token ${i}`).toBe(Math.floor(i / 2) !== 17));

    const agent = (await admin().agents.getAgent({ agentId: target })).agent!;
    expect(agent.status).toBe(AgentStatus.REVOKED);
    expect(agent.revokedReason).toBe("prompt injection");
    expect(agent.revokedBy).toBe(`key:${onCall.key!.keyId}`);
    expect(agent.revokedAt).toBeDefined();

    await rec.until((r) => r.revisions.includes(res.revision));
    await new Promise((r) => setTimeout(r, 300));
    const mine = rec.events.slice(before);
    expect(mine.map((e) => e.target)).toEqual([{ case: "agentId", value: target }]);
    expect(mine[0]!.revokedBy).toBe(agent.revokedBy);
    await rec.stop();

    // Recovery is a new identity with a fresh score.
    const again = await admin().agents.registerAgent({ name: "fleet-17", publicKey: publicKey() });
    const score = await admin().activity.getTrustScore({ agentId: again.agent!.agentId });
    expect(score.trustScore!.factors.find((f) => f.name === "incidents")?.contribution).toBe(0);
  });
});
