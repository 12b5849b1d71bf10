import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { TimestampSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { sql } from "kysely";
import { IssueRequestSchema, type IssueRequest } from "../gen/agentid/v1/token_pb.js";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { createClient } from "@connectrpc/connect";
import { publicKey, startHarness, type Clients, type Harness } from "./support/harness.js";
import { signedIssueRequest } from "../src/client/self-issue.js";
import { pointProblem, L } from "../src/domain/ed25519.js";
import { issuePayload } from "../src/domain/proof.js";
import { newAgentId } from "../src/domain/ids.js";

// The eight points of order dividing 8, canonically encoded, then the non-canonical encodings of
// small-order points (y >= p, or the sign bit set on x = 0): the lists of libsodium's blocklist and
// "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko 2020).
const SMALL_ORDER_CANONICAL = [
  "0100000000000000000000000000000000000000000000000000000000000000", // identity, order 1
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
  "0000000000000000000000000000000000000000000000000000000000000000", // order 4
  "0000000000000000000000000000000000000000000000000000000000000080", // order 4
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
];
const SMALL_ORDER_NON_CANONICAL = [
  "0100000000000000000000000000000000000000000000000000000000000080", // identity, x = -0
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // order 2, x = -0
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p (= 0), order 4
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1 (= 1), identity
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
];
const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));
const IDENTITY = hex(SMALL_ORDER_CANONICAL[0]!);

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

async function error(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected an error");
}

function agentKeys(): { privateKey: KeyObject; publicKey: Uint8Array } {
  const { privateKey, publicKey: pub } = generateKeyPairSync("ed25519");
  return { privateKey, publicKey: new Uint8Array(pub.export({ type: "spki", format: "der" }).subarray(-32)) };
}

async function registered(allowedScopes: string[] = ["orders:read"], allowedAudiences: string[] = ["orders"]) {
  const keys = agentKeys();
  const { agent } = await h.grpc.agents.registerAgent({ name: "proofs", publicKey: keys.publicKey, allowedScopes, allowedAudiences });
  return { agentId: agent!.agentId, deploymentId: agent!.deploymentId, ...keys };
}

function littleEndian32(n: bigint): Buffer {
  const b = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) b[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return b;
}

describe("the small-order point list (pure)", () => {
  it("flags every small-order point, canonical or not, and no honest key", () => {
    for (const p of SMALL_ORDER_CANONICAL) expect(pointProblem(hex(p)), p).toBe("a small-order point");
    for (const p of SMALL_ORDER_NON_CANONICAL) expect(pointProblem(hex(p)), p).toBe("not a canonical curve point");
    for (let i = 0; i < 50; i++) expect(pointProblem(agentKeys().publicKey)).toBeUndefined();
  });
});

describe.each(["grpc", "connect"] as const)("forgeable proofs over %s", (transport) => {
  it("RegisterAgent refuses every small-order and non-canonical public key", async () => {
    for (const p of [...SMALL_ORDER_CANONICAL, ...SMALL_ORDER_NON_CANONICAL]) {
      const err = await error(h[transport].agents.registerAgent({ name: "weak", publicKey: hex(p) }));
      expect(err.code, p).toBe(Code.InvalidArgument);
      expect(err.rawMessage, p).toMatch(/^public_key: /);
    }
  });

  it("refuses the R = identity, S = 0 forgery, even for a small-order key stored before registration refused them", async () => {
    // A data folder from before this change may hold such an agent: put one in behind the API.
    const agentId = newAgentId();
    await sql`insert into agents (id, name, public_key, labels, status, allowed_scopes, allowed_audiences)
      values (${agentId}, 'old', ${Buffer.from(IDENTITY)}, '{}', 'ACTIVE', '{s}', '{orders}')`.execute(h.ctx.db);
    const forged = create(IssueRequestSchema, {
      agentId,
      scopes: ["s"],
      audiences: ["orders"],
      proof: { signedAt: timestampFromMs(Date.now()), nonce: `forged${transport}xxxxxxxxxxxx`, signature: new Uint8Array([...IDENTITY, ...new Uint8Array(32)]) },
    });
    const err = await error(h.as(undefined)[transport].tokens.issue(forged));
    expect(err.code).toBe(Code.Unauthenticated);
  });

  it("refuses a signature with a non-canonical S (S + L) or a small-order R", async () => {
    const a = await registered();
    const anon = h.as(undefined)[transport];
    const good = signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes: ["orders:read"] });
    const sig = Buffer.from(good.proof!.signature);
    const s = sig.subarray(32).reduceRight((n, b) => (n << 8n) | BigInt(b), 0n);
    const malleated = create(IssueRequestSchema, { ...good, proof: { ...good.proof!, signature: Buffer.concat([sig.subarray(0, 32), littleEndian32(s + L)]) } });
    expect((await error(anon.tokens.issue(malleated))).code).toBe(Code.Unauthenticated);
    const smallR = create(IssueRequestSchema, { ...good, proof: { ...good.proof!, signature: Buffer.concat([Buffer.from(IDENTITY), sig.subarray(32)]) } });
    expect((await error(anon.tokens.issue(smallR))).code).toBe(Code.Unauthenticated);
    // The untouched request still works: the refusals were about the signature's encoding.
    await anon.tokens.issue(good);
  });
});

describe.each(["grpc", "connect"] as const)("allowed audiences over %s", (transport) => {
  it("bind an issuer's key like allowed scopes", async () => {
    const c = h[transport];
    const { agent } = await c.agents.registerAgent({ name: "bound", publicKey: publicKey(), allowedScopes: ["orders:read"], allowedAudiences: ["orders"] });
    expect(agent).toMatchObject({ allowedScopes: ["orders:read"], allowedAudiences: ["orders"] });
    expect((await c.agents.getAgent({ agentId: agent!.agentId })).agent).toMatchObject({ allowedAudiences: ["orders"] });
    await c.tokens.issue({ agentId: agent!.agentId, scopes: ["orders:read"], audiences: ["orders"] });
    const err = await error(c.tokens.issue({ agentId: agent!.agentId, scopes: ["orders:read"], audiences: ["billing"] }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toContain("audiences billing");
  });

  it("bind the agent's own proof the same way", async () => {
    const a = await registered(["orders:read"], ["orders"]);
    const anon = h.as(undefined)[transport];
    const sign = (audiences: string[]) =>
      signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes: ["orders:read"], audiences });
    await anon.tokens.issue(sign(["orders"]));
    const err = await error(anon.tokens.issue(sign(["billing"])));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toContain("audiences billing");
  });

  it("deny by default: an agent registered with none can be issued no scope and no audience, by anyone", async () => {
    const a = await registered([], []);
    const anon = h.as(undefined)[transport];
    const c = h[transport];
    expect((await error(c.tokens.issue({ agentId: a.agentId, scopes: ["anything"] }))).code).toBe(Code.PermissionDenied);
    expect((await error(c.tokens.issue({ agentId: a.agentId, audiences: ["anywhere"] }))).code).toBe(Code.PermissionDenied);
    const self = (scopes: string[], audiences: string[]) =>
      signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes, audiences });
    expect((await error(anon.tokens.issue(self(["anything"], [])))).code).toBe(Code.PermissionDenied);
    expect((await error(anon.tokens.issue(self([], ["anywhere"])))).code).toBe(Code.PermissionDenied);
    // A bare token is still possible on both paths; no resource server can see it.
    await c.tokens.issue({ agentId: a.agentId });
    await anon.tokens.issue(self([], []));
  });

  it("agent.registered records what the agent is allowed", async () => {
    const { agent } = await h[transport].agents.registerAgent({ name: "logged", publicKey: publicKey(), allowedScopes: ["b", "a"], allowedAudiences: ["orders"] });
    const audit = createClient(AuditService, transport === "grpc" ? h.grpcTransport : h.connectTransport);
    const { entries } = await audit.listEntries({ agentId: agent!.agentId, kind: "agent.registered" });
    expect(JSON.parse(entries[0]!.detailsJson)).toMatchObject({ allowed_scopes: ["b", "a"], allowed_audiences: ["orders"] });
  });
});

describe.each(["grpc", "connect"] as const)("proofs bound to this deployment over %s", (transport) => {
  it("refuses a proof made for another deployment", async () => {
    const a = await registered();
    const anon = h.as(undefined)[transport];
    const elsewhere = signedIssueRequest({ deploymentId: "dep_00000000000000000000000000000000", agentId: a.agentId, privateKey: a.privateKey, scopes: ["orders:read"] });
    const err = await error(anon.tokens.issue(elsewhere));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain(a.deploymentId);
    await anon.tokens.issue(signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes: ["orders:read"] }));
  });

  it("refuses the v1 payload, which named no deployment", async () => {
    const a = await registered();
    const signedAtMs = Date.now();
    const nonce = `v1payload${transport}xxxxxxxx`;
    const v1 = ["agentid-issue-v1", a.agentId, "orders:read", "", "0", String(signedAtMs), nonce].join("\n");
    const req = create(IssueRequestSchema, {
      agentId: a.agentId,
      scopes: ["orders:read"],
      proof: { signedAt: timestampFromMs(signedAtMs), nonce, signature: sign(null, Buffer.from(v1), a.privateKey) },
    });
    expect((await error(h.as(undefined)[transport].tokens.issue(req))).code).toBe(Code.Unauthenticated);
  });

  it("a signed_at no clock can represent is INVALID_ARGUMENT naming proof.signed_at, never a skipped skew check", async () => {
    const a = await registered();
    const good = signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.agentId, privateKey: a.privateKey, scopes: ["orders:read"] });
    for (const seconds of [10n ** 15n, -(10n ** 15n), 9_000_000_000_000n]) {
      const req = create(IssueRequestSchema, { ...good, proof: { ...good.proof!, signedAt: create(TimestampSchema, { seconds, nanos: 0 }) } });
      const err = await error(h.as(undefined)[transport].tokens.issue(req));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/^proof\.signed_at: /);
    }
  });
});

describe("one clock for proofs: the database's", () => {
  let lagging: Harness;
  const SKEW_MS = 5000;
  beforeAll(async () => {
    lagging = await startHarness({ config: { proofMaxSkewMs: SKEW_MS } });
  });
  afterAll(() => lagging?.close());

  /** Runs `f` as a replica whose clock is `lagMs` behind the database's. */
  async function withReplicaClockLagging<T>(lagMs: number, f: () => Promise<T>): Promise<T> {
    const realNow = Date.now.bind(Date);
    const spy = vi.spyOn(Date, "now").mockImplementation(() => realNow() - lagMs);
    try {
      return await f();
    } finally {
      spy.mockRestore();
    }
  }

  async function agent(c: Clients) {
    const keys = agentKeys();
    const { agent: a } = await c.agents.registerAgent({ name: "clock", publicKey: keys.publicKey, allowedScopes: ["s"] });
    return { agentId: a!.agentId, deploymentId: a!.deploymentId, ...keys };
  }

  function signedAt(a: Awaited<ReturnType<typeof agent>>, signedAtMs: number, nonce: string): IssueRequest {
    const payload = issuePayload({ deploymentId: a.deploymentId, agentId: a.agentId, scopes: ["s"], audiences: [], ttlMs: 0, signedAtMs, nonce });
    return create(IssueRequestSchema, {
      agentId: a.agentId,
      scopes: ["s"],
      proof: { signedAt: timestampFromMs(signedAtMs), nonce, signature: sign(null, payload, a.privateKey) },
    });
  }

  it.each(["grpc", "connect"] as const)("a replica whose clock lags cannot accept a replay (%s)", async (transport) => {
    const a = await agent(lagging[transport]);
    const anon = lagging.as(undefined)[transport];
    // Signed 7.5 s ago with a 5 s bound: by the database's clock its nonce has already expired,
    // while a replica 5 s behind finds it 2.5 s old. (Margins of seconds, for a loaded machine.)
    const captured = signedAt(a, Date.now() - 7500, `lagging${transport}xxxxxxxxx`);
    const outcomes = await withReplicaClockLagging(5000, async () => [
      await anon.tokens.issue(captured).then(() => "issued", (e) => ConnectError.from(e).code),
      await anon.tokens.issue(captured).then(() => "issued", (e) => ConnectError.from(e).code),
    ]);
    expect(outcomes.filter((o) => o === "issued").length).toBeLessThanOrEqual(1);
    expect(outcomes).toEqual([Code.Unauthenticated, Code.Unauthenticated]);
  });

  it.each(["grpc", "connect"] as const)("measures the skew against the database's clock, not the replica's (%s)", async (transport) => {
    const a = await agent(lagging[transport]);
    const anon = lagging.as(undefined)[transport];
    // Fresh by the database's clock; 12 s in the future by a replica 12 s behind.
    const fresh = signedAt(a, Date.now(), `fresh${transport}xxxxxxxxxxxx`);
    await withReplicaClockLagging(12_000, () => anon.tokens.issue(fresh));
  });
});
