import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AuditService, type AuditEntry } from "../gen/agentid/v1/audit_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { PolicyKind, PolicyService } from "../gen/agentid/v1/policy_pb.js";
import { bearer, publicKey, startHarness, type Harness } from "./support/harness.js";
import { entryBytes, leafHash } from "../src/audit/encoding.js";
import { messageContent } from "../src/audit/verify.js";

// The log's visibility follows the RPCs' rules (issue 9.12).

let h: Harness;
let issuerKey: string;
let rsKey: string;
let ordersAgent: string;
let otherAgent: string;
let ordersToken: string;
let billingToken: string;

beforeAll(async () => {
  h = await startHarness();
  const keys = createClient(KeyService, h.grpcTransport);
  issuerKey = (await keys.createApiKey({ name: "ci issuer", role: Role.ISSUER })).secret;
  rsKey = (await keys.createApiKey({ name: "orders api", role: Role.RESOURCE_SERVER, audiences: ["orders"] })).secret;
  await createClient(PolicyService, h.grpcTransport).createPolicy({ policy: { name: "strict", kind: PolicyKind.TRUST_BELOW, threshold: 5 } });
  const c = h.grpc;
  ordersAgent = (await c.agents.registerAgent({ name: "shop", publicKey: publicKey(), allowedAudiences: ["orders", "billing"] })).agent!.agentId;
  otherAgent = (await c.agents.registerAgent({ name: "elsewhere", publicKey: publicKey(), allowedAudiences: ["billing"] })).agent!.agentId;
  ordersToken = (await c.tokens.issue({ agentId: ordersAgent, audiences: ["orders"] })).tokenId;
  billingToken = (await c.tokens.issue({ agentId: ordersAgent, audiences: ["billing"] })).tokenId;
  await c.tokens.issue({ agentId: otherAgent, audiences: ["billing"] });
  await c.tokens.revoke({ target: { case: "tokenId", value: ordersToken }, reason: "rotated" });
  await c.tokens.revoke({ target: { case: "tokenId", value: billingToken }, reason: "rotated" });
  await c.tokens.revoke({ target: { case: "agentId", value: otherAgent }, reason: "compromised" });
  await c.tokens.revoke({ target: { case: "agentId", value: ordersAgent }, reason: "retired" });
});
afterAll(() => h?.close());

const transports = ["grpc", "connect"] as const;

function audit(t: (typeof transports)[number], key: string): Client<typeof AuditService> {
  const interceptors = [bearer(key)];
  const transport =
    t === "grpc"
      ? createGrpcTransport({ baseUrl: `http://${h.grpcAddress}`, interceptors })
      : createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors });
  return createClient(AuditService, transport);
}

async function all(c: Client<typeof AuditService>, q: { kind?: string; agentId?: string } = {}): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  let pageToken = "";
  do {
    const page = await c.listEntries({ ...q, pageSize: 3, pageToken });
    out.push(...page.entries);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

/** Entries are whole: each still hashes to the leaf the log committed to. */
function expectWhole(entries: AuditEntry[]): void {
  for (const e of entries) expect(Buffer.from(e.leafHash).equals(leafHash(entryBytes(messageContent(e)))), `entry ${e.seq}`).toBe(true);
}

describe.each(transports)("ListEntries by role over %s", (t) => {
  it("an admin reads every entry, keys and policies included", async () => {
    const kinds = new Set((await all(audit(t, h.adminKey))).map((e) => e.kind));
    for (const k of ["key.created", "policy.created", "agent.registered", "token.issued", "token.revoked", "agent.revoked"]) expect(kinds).toContain(k);
  });

  it("an issuer reads agents and tokens, but no key or policy metadata", async () => {
    const c = audit(t, issuerKey);
    const entries = await all(c);
    const kinds = new Set(entries.map((e) => e.kind));
    expect(kinds).toContain("agent.registered");
    expect(kinds).toContain("token.issued");
    expect(kinds).toContain("agent.revoked");
    expect([...kinds].filter((k) => k.startsWith("key.") || k.startsWith("policy."))).toEqual([]);
    expect(entries.map((e) => e.detailsJson).join("\n")).not.toContain("orders api");
    // Asking by kind does not get around it.
    expect(await all(c, { kind: "key.created" })).toEqual([]);
    expect(await all(c, { kind: "policy.created" })).toEqual([]);
    expectWhole(entries);
  });

  it("a resource server reads only entries about tokens for its audiences, and the revocations of their agents", async () => {
    const c = audit(t, rsKey);
    const entries = await all(c);
    const seen = entries.map((e) => `${e.kind} ${e.tokenId || e.agentId}`).sort();
    expect(seen).toEqual([`agent.revoked ${ordersAgent}`, `token.issued ${ordersToken}`, `token.revoked ${ordersToken}`].sort());
    expect(await all(c, { agentId: otherAgent })).toEqual([]);
    expect(await all(c, { kind: "agent.registered" })).toEqual([]);
    expectWhole(entries);
  });

  it("a resource server may check an entry's inclusion and the log's consistency", async () => {
    const c = audit(t, rsKey);
    const [entry] = await all(c);
    const proof = await c.getInclusionProof({ leafIndex: entry!.seq });
    expect(proof.treeSize).toBeGreaterThan(entry!.seq);
  });

  it("an issuer cannot confirm a guess of a hidden policy entry from its leaf hash (new leaves are salted)", async () => {
    // The issuer learns the tree's leaf hashes from the hash tiles any role may read.
    const head = await audit(t, issuerKey).getCheckpoint({});
    const size = Number(head.checkpoint!.treeSize);
    const res = await fetch(`http://127.0.0.1:${h.server.httpPort}/tile/0/000.p/${size}`, { headers: { authorization: `Bearer ${issuerKey}` } });
    expect(res.status).toBe(200);
    const tile = Buffer.from(await res.arrayBuffer());
    // Its best guess: everything the admin sees of the entry, the threshold included, but the salt.
    const [policy] = await all(audit(t, h.adminKey), { kind: "policy.created" });
    const guess = leafHash(entryBytes({ ...messageContent(policy!), salt: "" }));
    expect(tile.subarray(Number(policy!.seq) * 32, Number(policy!.seq) * 32 + 32).equals(guess)).toBe(false);
    expect(tile.subarray(Number(policy!.seq) * 32, Number(policy!.seq) * 32 + 32).equals(Buffer.from(policy!.leafHash))).toBe(true);
    expect(policy!.salt).toMatch(/^[0-9a-f]{32}$/);
    // The salt is shown only with the entry, and an issuer never gets this one.
    const seen = await all(audit(t, issuerKey));
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((e) => /^[0-9a-f]{32}$/.test(e.salt) && e.salt !== policy!.salt)).toBe(true);
  });

  it("a malformed key reads nothing", async () => {
    const err = await audit(t, `${h.adminKey.slice(0, -3)}abc`)
      .listEntries({})
      .catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
  });
});
