import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Role } from "../gen/agentid/v1/key_pb.js";
import { PolicyKind } from "../gen/agentid/v1/policy_pb.js";
import { ActivityKind, UsageOutcome } from "../gen/agentid/v1/activity_pb.js";
import { AgentStatus } from "../gen/agentid/v1/agent_pb.js";
import { bearer, clientsFor, publicKey, startHarness, type Harness } from "./support/harness.js";
import { StreamRecorder } from "./support/feed.js";

let h: Harness;
let rsKey: string;
function clientsWith(key: string) {
  const transport = createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors: [bearer(key)] });
  return clientsFor(transport);
}
const admin = () => clientsWith(h.adminKey);
const rs = () => clientsWith(rsKey);

beforeAll(async () => {
  h = await startHarness();
  rsKey = (await admin().keys.createApiKey({ name: "api", role: Role.RESOURCE_SERVER, audiences: ["api"] })).secret;
});
afterAll(() => h?.close());

async function agentWithToken() {
  const { agent } = await admin().agents.registerAgent({ name: "p", publicKey: publicKey(), allowedScopes: ["read"], allowedAudiences: ["api"] });
  const { token, tokenId } = await admin().tokens.issue({ agentId: agent!.agentId, scopes: ["read"], audiences: ["api"] });
  return { agentId: agent!.agentId, token, tokenId };
}

async function status(agentId: string) {
  return (await admin().agents.getAgent({ agentId })).agent!;
}

describe("policies", () => {
  it("revoke an agent that crosses the scope-violation threshold, and not one just below", async () => {
    await admin().policies.createPolicy({
      policy: { name: "scope-abuse", kind: PolicyKind.SCOPE_VIOLATIONS, threshold: 3, window: durationFromMs(3_600_000) },
    });
    const rec = new StreamRecorder(h.grpc, 0n);
    await rec.until((r) => r.progress.length > 0);
    const bad = await agentWithToken();
    const borderline = await agentWithToken();

    // Three violations each: at the threshold, not over it.
    for (let i = 0; i < 3; i++) {
      await rs().tokens.introspect({ token: bad.token, requiredScope: "admin" });
      await rs().tokens.introspect({ token: borderline.token, requiredScope: "admin" });
    }
    await h.ctx.activity.flush();
    expect((await admin().activity.getTrustScore({ agentId: borderline.agentId })).trustScore!.factors[0]).toMatchObject({ name: "scope_adherence", count: 3n });
    expect((await status(bad.agentId)).status).toBe(AgentStatus.ACTIVE);

    // The fourth crosses it: activity in, revocation out on the feed.
    await rs().tokens.introspect({ token: bad.token, requiredScope: "admin" });
    await rec.until((r) => r.events.some((e) => e.target.value === bad.agentId), 5000);
    const event = rec.events.find((e) => e.target.value === bad.agentId)!;
    expect(event.revokedBy).toBe("policy:scope-abuse");
    expect(event.reason).toContain("4 scope violations within 3600s (threshold 3)");
    const agent = await status(bad.agentId);
    expect(agent).toMatchObject({ status: AgentStatus.REVOKED, revokedBy: "policy:scope-abuse" });
    expect((await rs().tokens.introspect({ token: bad.token })).active).toBe(false);

    await new Promise((r) => setTimeout(r, 300));
    expect((await status(borderline.agentId)).status).toBe(AgentStatus.ACTIVE);
    expect(rec.events.some((e) => e.target.value === borderline.agentId)).toBe(false);
    await rec.stop();
    await admin().policies.deletePolicy({ name: "scope-abuse" });
  });

  it("revoke an agent whose trust score falls below the threshold", async () => {
    await admin().policies.createPolicy({ policy: { name: "low-trust", kind: PolicyKind.TRUST_BELOW, threshold: 50 } });
    const a = await agentWithToken();
    const b = await agentWithToken();
    const report = (agentId: string) => admin().activity.reportActivity({ agentId, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "exfil pattern" });

    // New agent: 100 - 10 (age); each incident -20.
    expect((await report(a.agentId)).trustScore!.score).toBeCloseTo(70, 0);
    const second = await report(a.agentId);
    expect(second.trustScore!.score).toBeCloseTo(50, 0);
    expect(second.agentRevoked).toBe(false);
    const third = await report(a.agentId);
    expect(third).toMatchObject({ agentRevoked: true, revokedBy: "policy:low-trust" });
    expect((await status(a.agentId)).revokedReason).toMatch(/^policy low-trust: trust score 30(\.\d+)? below 50$/);

    await report(b.agentId);
    await report(b.agentId);
    expect((await status(b.agentId)).status).toBe(AgentStatus.ACTIVE);
    await admin().policies.deletePolicy({ name: "low-trust" });
  });

  it("are listed, validated and deleted", async () => {
    await admin().policies.createPolicy({ policy: { name: "listed", kind: PolicyKind.TRUST_BELOW, threshold: 20 } });
    const list = await admin().policies.listPolicies({});
    expect(list.policies.find((p) => p.name === "listed")).toMatchObject({ threshold: 20, createdBy: expect.stringMatching(/^key:/) });
    const code = async (p: Promise<unknown>) => ConnectError.from(await p.then(() => null, (e) => e)).code;
    expect(await code(admin().policies.createPolicy({ policy: { name: "listed", kind: PolicyKind.TRUST_BELOW, threshold: 20 } }))).toBe(Code.AlreadyExists);
    expect(await code(admin().policies.createPolicy({ policy: { name: "Bad Name", kind: PolicyKind.TRUST_BELOW, threshold: 20 } }))).toBe(Code.InvalidArgument);
    expect(await code(admin().policies.createPolicy({ policy: { name: "x", kind: PolicyKind.TRUST_BELOW, threshold: 200 } }))).toBe(Code.InvalidArgument);
    expect(await code(admin().policies.createPolicy({ policy: { name: "y", kind: PolicyKind.SCOPE_VIOLATIONS, threshold: 2 } }))).toBe(Code.InvalidArgument);
    expect(await code(admin().policies.createPolicy({ policy: { name: "z" } }))).toBe(Code.InvalidArgument);
    expect(await code(admin().policies.createPolicy({}))).toBe(Code.InvalidArgument);
    await admin().policies.deletePolicy({ name: "listed" });
    expect(await code(admin().policies.deletePolicy({ name: "listed" }))).toBe(Code.NotFound);
  });
});

describe("the trust score", () => {
  it("shows each factor's contribution, and its history by time range", async () => {
    const a = await agentWithToken();
    const t0 = new Date();
    const first = (await admin().activity.getTrustScore({ agentId: a.agentId })).trustScore!;
    expect(first.factors.map((f) => f.name)).toEqual(["scope_adherence", "request_rate", "novel_access", "incidents", "age"]);
    expect(first.score).toBeCloseTo(90, 0);
    expect(first.score).toBeCloseTo(100 + first.factors.reduce((s, f) => s + f.contribution, 0), 5);
    // Reading a score writes nothing.
    for (let i = 0; i < 3; i++) await admin().activity.getTrustScore({ agentId: a.agentId });
    expect((await admin().activity.listTrustScores({ agentId: a.agentId })).trustScores).toEqual([]);

    // Two refusals in one report: one batch by construction (two Introspects may straddle a flush).
    const now = timestampFromDate(new Date());
    await rs().activity.reportUsage({
      records: [{ token: { case: "tokenId", value: a.tokenId }, audience: "api", scope: "write", outcome: UsageOutcome.SCOPE_NOT_GRANTED, count: 2n, firstSeen: now, lastSeen: now }],
    });
    const after = (await admin().activity.getTrustScore({ agentId: a.agentId })).trustScore!;
    expect(after.factors.find((f) => f.name === "scope_adherence")).toMatchObject({ contribution: -20, count: 2n });
    expect(after.factors.find((f) => f.name === "scope_adherence")!.detail).toContain("2 scope violation(s)");

    const t1 = new Date();
    // One batch, one evaluation: one history row for the change, not one per request.
    const history = await admin().activity.listTrustScores({ agentId: a.agentId, since: timestampFromDate(t0) });
    expect(history.trustScores.map((s) => Math.round(s.score))).toEqual([70]);
    const none = await admin().activity.listTrustScores({ agentId: a.agentId, until: timestampFromDate(t0) });
    expect(none.trustScores).toEqual([]);
    const later = await admin().activity.listTrustScores({ agentId: a.agentId, since: timestampFromDate(new Date(t1.getTime() + 60_000)) });
    expect(later.trustScores).toEqual([]);
  });

  it("counts introspections per agent in time buckets", async () => {
    const a = await agentWithToken();
    for (let i = 0; i < 5; i++) await rs().tokens.introspect({ token: a.token });
    await h.ctx.activity.flush();
    const { rows } = await (await import("kysely")).sql<{ n: string }>`
      select sum(n) as n from usage_counts where agent_id = ${a.agentId} and source = 'introspect' and outcome = 'allowed'`.execute(h.ctx.db);
    expect(Number(rows[0]!.n)).toBe(5);
    const rate = (await admin().activity.getTrustScore({ agentId: a.agentId })).trustScore!.factors.find((f) => f.name === "request_rate")!;
    expect(rate).toMatchObject({ count: 5n });
    expect(rate.detail).toContain("5 introspections in the last 1h");
  });
});

describe("the transparency log", () => {
  it("records key, policy and activity changes with their actor", async () => {
    const audit = h.grpc.audit;
    const { key } = await admin().keys.createApiKey({ name: "audited", role: Role.ISSUER });
    await admin().keys.revokeApiKey({ keyId: key!.keyId });
    await admin().policies.createPolicy({ policy: { name: "audited", kind: PolicyKind.TRUST_BELOW, threshold: 5 } });
    await admin().policies.deletePolicy({ name: "audited" });
    const a = await agentWithToken();
    await rs().activity.reportActivity({ token: a.token, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "odd" });

    const entries = (await audit.listEntries({ pageSize: 1000 })).entries;
    const find = (kind: string, pred: (d: Record<string, unknown>) => boolean) =>
      entries.find((e) => e.kind === kind && pred(JSON.parse(e.detailsJson) as Record<string, unknown>));
    const adminActor = expect.stringMatching(/^key:key_/);
    expect(entries[0]).toMatchObject({ kind: "key.created", actor: "bootstrap" });
    expect(find("key.created", (d) => d.key_id === key!.keyId)).toMatchObject({ actor: adminActor });
    expect(find("key.revoked", (d) => d.key_id === key!.keyId)).toMatchObject({ actor: adminActor });
    expect(find("policy.created", (d) => d.name === "audited")).toMatchObject({ actor: adminActor });
    expect(find("policy.deleted", (d) => d.name === "audited")).toMatchObject({ actor: adminActor });
    const report = entries.find((e) => e.kind === "activity.reported" && e.agentId === a.agentId);
    expect(report).toMatchObject({ reason: "anomalous_request", actor: expect.stringMatching(/^key:key_/) });
    expect(JSON.parse(report!.detailsJson)).toEqual({ kind: "anomalous_request", detail: "odd" });
  });
});
