// The trust engine as an operator meets it: every gate's decisions count (the SDK's reports,
// nginx auth_request, Envoy ext_authz, a resource server's Introspect), an operator's own checks
// never do, a kill puts what the agent did into the log at once, and no report can stop the trail.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { sql } from "kysely";
import { Role } from "../gen/agentid/v1/key_pb.js";
import { PolicyKind } from "../gen/agentid/v1/policy_pb.js";
import { UsageOutcome } from "../gen/agentid/v1/activity_pb.js";
import { AgentStatus } from "../gen/agentid/v1/agent_pb.js";
import { InactiveReason } from "../gen/agentid/v1/token_pb.js";
import { Authorization } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { bearer, clientsFor, publicKey, startHarness, type Harness } from "./support/harness.js";
import { until } from "./support/until.js";

function clientsOn(transport: Transport) {
  return { ...clientsFor(transport), envoy: createClient(Authorization, transport) };
}

function server(h: Harness) {
  const http = (key: string) => clientsOn(createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors: [bearer(key)] }));
  const grpc = (key: string) => clientsOn(createGrpcTransport({ baseUrl: `http://${h.grpcAddress}`, interceptors: [bearer(key)] }));
  const admin = http(h.adminKey);
  return {
    admin,
    http,
    grpc,
    async key(role: Role, audiences: string[] = []) {
      return (await admin.keys.createApiKey({ name: `k-${role}`, role, audiences })).secret;
    },
    async agent(scopes: string[], audiences: string[], tokenScopes = scopes) {
      const { agent } = await admin.agents.registerAgent({ name: "trusted", publicKey: publicKey(), allowedScopes: scopes, allowedAudiences: audiences });
      const issued = await admin.tokens.issue({ agentId: agent!.agentId, scopes: tokenScopes, audiences });
      return { agentId: agent!.agentId, token: issued.token, tokenId: issued.tokenId };
    },
    async status(agentId: string) {
      return (await admin.agents.getAgent({ agentId })).agent!.status;
    },
    async factor(agentId: string, name: string) {
      return (await admin.activity.getTrustScore({ agentId })).trustScore!.factors.find((f) => f.name === name)!;
    },
    async usageEntries(agentId: string) {
      const { entries } = await admin.audit.listEntries({ agentId, kind: "activity.usage", pageSize: 1000 });
      return entries.map((e) => ({ actor: e.actor, details: JSON.parse(e.detailsJson) as UsageDetails }));
    },
    /** GET /auth as nginx sends it. */
    async nginx(gatewayKey: string, token: string, scope?: string) {
      const res = await fetch(`http://127.0.0.1:${h.server.httpPort}/auth`, {
        headers: { authorization: `Bearer ${token}`, "x-agentid-api-key": gatewayKey, ...(scope ? { "x-agentid-scope": scope } : {}) },
      });
      await res.arrayBuffer();
      return res.status;
    },
    /** Envoy's Check, with the required scope in the route's context extensions. */
    async envoy(gatewayKey: string, token: string, scope?: string) {
      const res = await grpc(gatewayKey).envoy.check({
        attributes: { request: { http: { headers: { authorization: `Bearer ${token}` } } }, contextExtensions: scope ? { agentid_scope: scope } : {} },
      });
      return res.httpResponse.case;
    },
  };
}

interface UsageDetails {
  bucket_start: string;
  total: number;
  counts: { audience: string; scope: string; outcome: string; source: string; count: number }[];
  continued?: boolean;
  part?: number;
  parts?: number;
}

const record = (tokenId: string, scope: string, outcome: UsageOutcome, count: number, audience = "api", inactiveReason = InactiveReason.UNSPECIFIED) => ({
  token: { case: "tokenId" as const, value: tokenId },
  audience,
  scope,
  outcome,
  inactiveReason,
  count: BigInt(count),
  firstSeen: timestampFromMs(Date.now() - 500),
  lastSeen: timestampFromMs(Date.now()),
});

describe("with the default 60 s bucket", () => {
  let h: Harness;
  let s: ReturnType<typeof server>;
  beforeAll(async () => {
    h = await startHarness();
    s = server(h);
  });
  afterAll(() => h?.close());

  it("counts gateway decisions: refusals at nginx and Envoy alone trip a scope policy", async () => {
    const gateway = await s.key(Role.RESOURCE_SERVER, ["api"]);
    await s.admin.policies.createPolicy({ policy: { name: "gate-abuse", kind: PolicyKind.SCOPE_VIOLATIONS, threshold: 5, window: durationFromMs(3_600_000) } });
    const a = await s.agent(["orders:read"], ["api"]);
    // Allowed requests count as requests, refusals as scope violations; five are not over the threshold.
    expect(await s.nginx(gateway, a.token, "orders:read")).toBe(200);
    expect(await s.envoy(gateway, a.token, "orders:read")).toBe("okResponse");
    for (let i = 0; i < 3; i++) expect(await s.nginx(gateway, a.token, "orders:write")).toBe(403);
    for (let i = 0; i < 2; i++) expect(await s.envoy(gateway, a.token, "orders:write")).toBe("deniedResponse");
    // RFC 7662 introspection by the resource server is a gate too.
    const form = await fetch(`http://127.0.0.1:${h.server.httpPort}/oauth2/introspect`, {
      method: "POST",
      headers: { authorization: `Bearer ${gateway}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: a.token }),
    });
    expect(((await form.json()) as { active: boolean }).active).toBe(true);
    await h.ctx.activity.flush();
    const adherence = await s.factor(a.agentId, "scope_adherence");
    expect(adherence.count).toBe(5n);
    expect(adherence.detail).toBe("5 scope violation(s) in 24h over 7 request(s)");
    expect(await s.status(a.agentId)).toBe(AgentStatus.ACTIVE);

    // The sixth refusal crosses it.
    expect(await s.envoy(gateway, a.token, "customers:export")).toBe("deniedResponse");
    await h.ctx.activity.flush();
    const agent = (await s.admin.agents.getAgent({ agentId: a.agentId })).agent!;
    expect(agent).toMatchObject({ status: AgentStatus.REVOKED, revokedBy: "policy:gate-abuse" });
    expect(agent.revokedReason).toBe("policy gate-abuse: 6 scope violations within 3600s (threshold 5)");
    // And the gateways refuse it from then on (counted as inactive, not as violations).
    expect(await s.nginx(gateway, a.token, "orders:read")).toBe(401);
    await s.admin.policies.deletePolicy({ name: "gate-abuse" });
  });

  it("never counts an operator's own checks: an admin's or issuer's Introspect is not the agent acting", async () => {
    await s.admin.policies.createPolicy({ policy: { name: "ops-abuse", kind: PolicyKind.SCOPE_VIOLATIONS, threshold: 5, window: durationFromMs(3_600_000) } });
    const issuer = await s.key(Role.ISSUER);
    const rs = await s.key(Role.RESOURCE_SERVER, ["api"]);
    const a = await s.agent(["customers:read"], ["api"], ["customers:read"]);
    for (let i = 0; i < 6; i++) {
      expect((await s.admin.tokens.introspect({ token: a.token, requiredScope: "customers:write" })).active).toBe(false);
      expect((await s.grpc(issuer).tokens.introspect({ token: a.token, requiredScope: "customers:write" })).active).toBe(false);
      await fetch(`http://127.0.0.1:${h.server.httpPort}/oauth2/introspect`, {
        method: "POST",
        headers: { authorization: `Bearer ${h.adminKey}`, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: a.token }),
      }).then((r) => r.arrayBuffer());
    }
    await h.ctx.activity.flush();
    expect(await s.status(a.agentId)).toBe(AgentStatus.ACTIVE);
    expect((await s.factor(a.agentId, "scope_adherence")).detail).toBe("0 scope violation(s) in 24h over 0 request(s)");

    // The same checks from the resource server the agent called are its behaviour.
    for (let i = 0; i < 6; i++) await s.grpc(rs).tokens.introspect({ token: a.token, requiredScope: "customers:write" });
    await h.ctx.activity.flush();
    expect((await s.admin.agents.getAgent({ agentId: a.agentId })).agent).toMatchObject({ status: AgentStatus.REVOKED, revokedBy: "policy:ops-abuse" });
    await s.admin.policies.deletePolicy({ name: "ops-abuse" });
  });

  it("logs what the agent did the moment a policy kills it, without waiting for its bucket", async () => {
    const rs = await s.key(Role.RESOURCE_SERVER, ["api"]);
    await s.admin.policies.createPolicy({ policy: { name: "kill-trail", kind: PolicyKind.SCOPE_VIOLATIONS, threshold: 10, window: durationFromMs(3_600_000) } });
    const a = await s.agent(["orders:read"], ["api"]);
    // What an SDK-guarded resource server reports: 50 allowed requests and 12 scope violations.
    const res = await s.grpc(rs).activity.reportUsage({
      records: [record(a.tokenId, "orders:read", UsageOutcome.ALLOWED, 50), record(a.tokenId, "customers:read", UsageOutcome.SCOPE_NOT_GRANTED, 12)],
    });
    expect(res.accepted).toBe(2n);
    expect(await s.status(a.agentId)).toBe(AgentStatus.REVOKED);
    const killedAt = Date.now();
    const entries = await until(() => s.usageEntries(a.agentId), (e) => e.length > 0, 1000);
    expect(Date.now() - killedAt).toBeLessThan(1000);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.details.total).toBe(62);
    expect(entries[0]!.details.counts).toEqual([
      { audience: "api", scope: "customers:read", outcome: "scope_not_granted", source: "report", count: 12 },
      { audience: "api", scope: "orders:read", outcome: "allowed", source: "report", count: 50 },
    ]);
    await s.admin.policies.deletePolicy({ name: "kill-trail" });
  });

  it("logs what the agent did the moment an operator kills it, gateway decisions included", async () => {
    const rs = await s.key(Role.RESOURCE_SERVER, ["api"]);
    const a = await s.agent(["orders:read"], ["api"]);
    await s.grpc(rs).activity.reportUsage({ records: [record(a.tokenId, "orders:read", UsageOutcome.ALLOWED, 7)] });
    // Counted in memory, not yet flushed when the kill comes.
    for (let i = 0; i < 3; i++) expect(await s.nginx(rs, a.token, "orders:read")).toBe(200);
    await s.admin.tokens.revoke({ target: { case: "agentId", value: a.agentId }, reason: "rogue" });
    const entries = await until(() => s.usageEntries(a.agentId), (e) => e.reduce((n, x) => n + x.details.total, 0) >= 10, 1000);
    expect(entries.map((e) => e.details.counts).flat()).toEqual(
      expect.arrayContaining([
        { audience: "api", scope: "orders:read", outcome: "allowed", source: "report", count: 7 },
        { audience: "api", scope: "orders:read", outcome: "allowed", source: "gateway", count: 3 },
      ]),
    );
  });

  it("refuses reports that contradict the token: allowed for a scope it lacks or an audience it does not list", async () => {
    const rs = await s.key(Role.RESOURCE_SERVER, ["api", "web"]);
    const a = await s.agent(["orders:read"], ["api"]);
    const invented = Array.from({ length: 300 }, (_, i) => record(a.tokenId, `invented:${i}`, UsageOutcome.ALLOWED, 1));
    const res = await s.grpc(rs).activity.reportUsage({
      records: [
        ...invented,
        record(a.tokenId, "orders:read", UsageOutcome.ALLOWED, 1, "web"),
        record(a.tokenId, "orders:read", UsageOutcome.SCOPE_NOT_GRANTED, 1),
        record(a.tokenId, "orders:read", UsageOutcome.ALLOWED, 2),
      ],
    });
    expect(res).toMatchObject({ accepted: 1n, rejected: 302n });
    const { rows } = await sql<{ scope: string; n: string }>`select scope, n from usage_counts where agent_id = ${a.agentId}`.execute(h.ctx.db);
    expect(rows).toEqual([{ scope: "orders:read", n: "2" }]);
    const { rows: access } = await sql<{ name: string }>`select name from agent_access where agent_id = ${a.agentId} order by name`.execute(h.ctx.db);
    expect(access.map((r) => r.name)).toEqual(["api", "orders:read"]);
  });

  it("forgets usage past the horizon, keeping refusals for the longest policy window", async () => {
    const a = await s.agent(["orders:read"], ["api"]);
    const at = (hoursAgo: number) => new Date(Date.now() - hoursAgo * 3_600_000);
    const row = (hoursAgo: number, scope: string, outcome: string) =>
      sql`insert into usage_counts (agent_id, bucket, reporter, source, audience, scope, outcome, n, first_seen, last_seen, logged)
          values (${a.agentId}, ${at(hoursAgo)}, 'key:old', 'report', 'api', ${scope}, ${outcome}, 1, ${at(hoursAgo)}, ${at(hoursAgo)}, 1)`.execute(h.ctx.db);
    await row(48, "old:a", "allowed");
    await row(48, "old:b", "scope_not_granted");
    await row(31 * 24, "old:c", "scope_not_granted");
    await row(1, "orders:read", "allowed");
    await sql`insert into agent_access (agent_id, kind, name, first_seen) values
      (${a.agentId}, 'scope', 'old:a', ${at(48)}), (${a.agentId}, 'scope', 'orders:read', ${at(48)})`.execute(h.ctx.db);
    const reporter = `key:${a.agentId}`;
    await sql`insert into usage_drops (reporter, bucket, n) values (${reporter}, ${at(48)}, 5), (${reporter}, ${at(1)}, 6)`.execute(h.ctx.db);
    await h.ctx.activity.prune();
    const { rows: drops } = await sql<{ n: string }>`select n from usage_drops where reporter = ${reporter}`.execute(h.ctx.db);
    expect(drops).toEqual([{ n: "6" }]);
    const { rows } = await sql<{ scope: string }>`select scope from usage_counts where agent_id = ${a.agentId} order by scope`.execute(h.ctx.db);
    expect(rows.map((r) => r.scope)).toEqual(["old:b", "orders:read"]);
    const { rows: access } = await sql<{ name: string }>`select name from agent_access where agent_id = ${a.agentId}`.execute(h.ctx.db);
    expect(access.map((r) => r.name)).toEqual(["orders:read"]);
  });
});

describe("with 1 s buckets", () => {
  let h: Harness;
  let s: ReturnType<typeof server>;
  beforeAll(async () => {
    h = await startHarness({ config: { activityBucketMs: 1000 } });
    s = server(h);
  });
  afterAll(() => h?.close());

  /** Waits for the bucket of `t` to close and be summarised. */
  async function summarised(t: number) {
    await new Promise((r) => setTimeout(r, Math.max(0, Math.ceil(t / 1000) * 1000 + 2100 - Date.now())));
    await h.ctx.activity.flush();
  }

  it("appends counts that arrive after the kill's summary as a further entry, never dropping them", async () => {
    const rs = await s.key(Role.RESOURCE_SERVER, ["api"]);
    const a = await s.agent(["orders:read"], ["api"]);
    // Both reports must land in one 1 s bucket: start just after a bucket begins.
    await new Promise((r) => setTimeout(r, 1020 - (Date.now() % 1000)));
    await s.grpc(rs).activity.reportUsage({ records: [record(a.tokenId, "orders:read", UsageOutcome.ALLOWED, 4)] });
    await s.admin.tokens.revoke({ target: { case: "agentId", value: a.agentId }, reason: "rogue" });
    await until(() => s.usageEntries(a.agentId), (e) => e.length > 0, 1000);
    // The SDK's last report, sent after the kill, for the same bucket.
    await s.grpc(rs).activity.reportUsage({
      records: [record(a.tokenId, "orders:read", UsageOutcome.ALLOWED, 1), record(a.tokenId, "orders:read", UsageOutcome.INACTIVE, 2, "api", InactiveReason.AGENT_REVOKED)],
    });
    await summarised(Date.now());
    const entries = await s.usageEntries(a.agentId);
    expect(entries.map((e) => e.details.total)).toEqual([4, 3]);
    expect(entries[1]!.details.continued).toBe(true);
    expect(entries[1]!.details.counts).toEqual([
      { audience: "api", scope: "orders:read", outcome: "allowed", source: "report", count: 1 },
      { audience: "api", scope: "orders:read", outcome: "inactive:agent_revoked", source: "report", count: 2 },
    ]);
  });

  it("logs counts a slow batch added to a bucket after its summary, once the next bucket closes", async () => {
    const rs = await s.key(Role.RESOURCE_SERVER, ["api"]);
    const a = await s.agent(["orders:read"], ["api"]);
    const sent = Date.now();
    await s.grpc(rs).activity.reportUsage({ records: [record(a.tokenId, "orders:read", UsageOutcome.ALLOWED, 3)] });
    await summarised(sent);
    expect((await s.usageEntries(a.agentId)).map((e) => e.details.total)).toEqual([3]);
    // What a batch that committed after the summary does: it adds to the bucket's row.
    await sql`update usage_counts set n = n + 2 where agent_id = ${a.agentId}`.execute(h.ctx.db);
    await summarised(Date.now());
    const entries = await s.usageEntries(a.agentId);
    expect(entries.map((e) => e.details.total)).toEqual([3, 2]);
    expect(entries[1]!.details).toMatchObject({ continued: true, bucket_start: entries[0]!.details.bucket_start });
  });

  it("caps an agent's lines per bucket, splits a summary too large for one entry, and loses no count", async () => {
    // 100-character scopes: a bucket's summary cannot fit in one 16 KiB entry.
    const scopes = Array.from({ length: 25 }, (_, i) => `s${String(i).padStart(2, "0")}:${"x".repeat(96)}`);
    const rs = await s.key(Role.RESOURCE_SERVER, ["api"]);
    const a = await s.agent(scopes, ["api"]);
    const records = [
      ...scopes.map((sc) => record(a.tokenId, sc, UsageOutcome.ALLOWED, 2)),
      ...Array.from({ length: 275 }, (_, i) => record(a.tokenId, `n${String(i).padStart(3, "0")}:${"y".repeat(96)}`, UsageOutcome.SCOPE_NOT_GRANTED, 1)),
    ];
    const sent = Date.now();
    expect((await s.grpc(rs).activity.reportUsage({ records })).accepted).toBe(300n);
    // A second report in the same bucket adds no new line past the cap.
    await s.grpc(rs).activity.reportUsage({ records: [record(a.tokenId, `late:${"z".repeat(96)}`, UsageOutcome.SCOPE_NOT_GRANTED, 3)] });
    const { rows } = await sql<{ lines: string }>`select count(*) as lines from usage_counts where agent_id = ${a.agentId}`.execute(h.ctx.db);
    expect(Number(rows[0]!.lines)).toBeLessThanOrEqual(101);
    await summarised(sent);
    const entries = await s.usageEntries(a.agentId);
    expect(entries.length).toBeGreaterThan(1);
    expect(entries.every((e) => e.details.parts === entries.length)).toBe(true);
    expect(entries.map((e) => e.details.part)).toEqual(entries.map((_, i) => i + 1));
    const counts = entries.flatMap((e) => e.details.counts);
    expect(counts.reduce((n, c) => n + c.count, 0)).toBe(50 + 275 + 3);
    expect(entries.reduce((n, e) => n + e.details.total, 0)).toBe(50 + 275 + 3);
    expect(counts.find((c) => c.scope === "(other scopes)")).toMatchObject({ audience: "(other audiences)", outcome: "scope_not_granted" });
    // All 25 of the token's scopes were used: every one is a known first use, no folded name is.
    const { rows: access } = await sql<{ n: string }>`select count(*) as n from agent_access where agent_id = ${a.agentId} and kind = 'scope'`.execute(h.ctx.db);
    expect(Number(access[0]!.n)).toBe(25);
  });

  it("a summary that cannot be written never holds back the others", async () => {
    const rs = await s.key(Role.RESOURCE_SERVER, ["api"]);
    const good = await s.agent(["orders:read"], ["api"]);
    const sent = Date.now();
    // A row no entry can hold (a count line past the entry limit), written beside a good one.
    await sql`insert into usage_counts (agent_id, bucket, reporter, source, audience, scope, outcome, n, first_seen, last_seen)
      values ('agt_unwritable', date_bin('1 second', now(), timestamptz 'epoch'), 'key:x', 'report', 'api', ${"q".repeat(20_000)}, 'allowed', 1, now(), now())`.execute(h.ctx.db);
    await s.grpc(rs).activity.reportUsage({ records: [record(good.tokenId, "orders:read", UsageOutcome.ALLOWED, 5)] });
    await summarised(sent);
    expect((await s.usageEntries(good.agentId)).map((e) => e.details.total)).toEqual([5]);
    expect(h.logs.some((l) => l.includes("a usage summary could not be logged") && l.includes("agt_unwritable"))).toBe(true);
    // And the trail goes on: the next bucket is summarised too.
    const next = Date.now();
    await s.grpc(rs).activity.reportUsage({ records: [record(good.tokenId, "orders:read", UsageOutcome.ALLOWED, 6)] });
    await summarised(next);
    expect((await s.usageEntries(good.agentId)).map((e) => e.details.total)).toEqual([5, 6]);
  });
});
