// ReportUsage: the audience rules on both transports, bad input, and the SDK's reporter.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Role, KeyService } from "../gen/agentid/v1/key_pb.js";
import { ActivityService, UsageOutcome } from "../gen/agentid/v1/activity_pb.js";
import { createVerifier } from "../src/client/index.js";
import { UsageReporter } from "../src/client/usage.js";
import { bearer, publicKey, startHarness, type Harness } from "./support/harness.js";
import { freePort } from "../bench/lib/cluster.js";

let h: Harness;
let rsKey: string;

function transport(name: string, key: string): Transport {
  return name === "grpc"
    ? createGrpcTransport({ baseUrl: `http://${h.grpcAddress}`, interceptors: [bearer(key)] })
    : createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors: [bearer(key)] });
}

beforeAll(async () => {
  h = await startHarness();
  rsKey = (await createClient(KeyService, h.grpcTransport).createApiKey({ name: "api", role: Role.RESOURCE_SERVER, audiences: ["api"] })).secret;
});
afterAll(() => h?.close());

async function agentWithToken(audience: string, scopes = ["read"]) {
  const { agent } = await h.grpc.agents.registerAgent({ name: "u", publicKey: publicKey(), allowedScopes: scopes, allowedAudiences: [audience] });
  const { token, tokenId } = await h.grpc.tokens.issue({ agentId: agent!.agentId, scopes, audiences: [audience] });
  return { agentId: agent!.agentId, token, tokenId, sha256: createHash("sha256").update(token).digest() };
}

async function usageOf(agentId: string): Promise<{ outcome: string; scope: string; n: number }[]> {
  const { rows } = await sql<{ outcome: string; scope: string; n: string }>`
    select outcome, scope, sum(n) as n from usage_counts where agent_id = ${agentId} and source = 'report'
    group by outcome, scope order by outcome, scope`.execute(h.ctx.db);
  return rows.map((r) => ({ outcome: r.outcome, scope: r.scope, n: Number(r.n) }));
}

const now = () => timestampFromMs(Date.now());
const rec = (token: { case: "tokenId"; value: string } | { case: "tokenSha256"; value: Uint8Array }, extra: Record<string, unknown> = {}) => ({
  token,
  audience: "api",
  scope: "read",
  outcome: UsageOutcome.ALLOWED,
  count: 3n,
  firstSeen: now(),
  lastSeen: now(),
  ...extra,
});
const failure = async (p: Promise<unknown>) => {
  const e = await p.then(() => null, (err: unknown) => ConnectError.from(err));
  return e && { code: e.code, message: e.rawMessage };
};

describe("ReportUsage", () => {
  for (const name of ["grpc", "connect"]) {
    it(`applies records only for tokens of the key's audiences, and says nothing about the rest (${name})`, async () => {
      const seen = await agentWithToken("api");
      const unseen = await agentWithToken("other");
      const activity = createClient(ActivityService, transport(name, rsKey));
      const res = await activity.reportUsage({
        records: [
          rec({ case: "tokenId", value: seen.tokenId }),
          rec({ case: "tokenSha256", value: seen.sha256 }, { scope: "write", outcome: UsageOutcome.SCOPE_NOT_GRANTED, count: 2n }),
          rec({ case: "tokenId", value: unseen.tokenId }),
          rec({ case: "tokenSha256", value: unseen.sha256 }),
          rec({ case: "tokenId", value: "tok_AAAAAAAAAAAAAAAAAAAAAA" }),
          // A token it can see, reported for an audience that is not the key's.
          rec({ case: "tokenId", value: seen.tokenId }, { audience: "other" }),
        ],
      });
      expect(res).toMatchObject({ accepted: 2n, rejected: 4n, stale: 0n });
      expect(await usageOf(seen.agentId)).toEqual([
        { outcome: "allowed", scope: "read", n: 3 },
        { outcome: "scope_not_granted", scope: "write", n: 2 },
      ]);
      expect(await usageOf(unseen.agentId)).toEqual([]);
      // An unseen token and one that never existed get the same reply.
      const a = await activity.reportUsage({ records: [rec({ case: "tokenId", value: unseen.tokenId })] });
      const b = await activity.reportUsage({ records: [rec({ case: "tokenId", value: "tok_BBBBBBBBBBBBBBBBBBBBBB" })] });
      expect(a).toEqual(b);
      // The refusals reach the trust score.
      const score = (await createClient(ActivityService, h.grpcTransport).getTrustScore({ agentId: seen.agentId })).trustScore!;
      expect(score.factors.find((f) => f.name === "scope_adherence")).toMatchObject({ count: 2n, contribution: -20 });
      const unseenScore = (await createClient(ActivityService, h.grpcTransport).getTrustScore({ agentId: unseen.agentId })).trustScore!;
      expect(unseenScore.factors.find((f) => f.name === "scope_adherence")).toMatchObject({ count: 0n });
    });

    it(`answers bad input with INVALID_ARGUMENT naming the field, or a documented drop (${name})`, async () => {
      const seen = await agentWithToken("api");
      const activity = createClient(ActivityService, transport(name, rsKey));
      const id = { case: "tokenId" as const, value: seen.tokenId };
      const cases: [Record<string, unknown>, string][] = [
        [{ count: -1n }, "records[0].count"],
        [{ count: 0n }, "records[0].count"],
        [{ count: 10n ** 15n }, "records[0].count"],
        [{ outcome: UsageOutcome.UNSPECIFIED }, "records[0].outcome"],
        [{ outcome: 99 }, "records[0].outcome"],
        [{ outcome: UsageOutcome.INACTIVE }, "records[0].inactive_reason"],
        [{ firstSeen: { seconds: 10n ** 12n, nanos: 0 } }, "records[0].first_seen"],
        [{ lastSeen: { seconds: -(10n ** 12n), nanos: 0 } }, "records[0].last_seen"],
        [{ firstSeen: undefined }, "records[0].first_seen"],
        [{ firstSeen: timestampFromMs(Date.now() + 1000), lastSeen: timestampFromMs(Date.now()) }, "records[0].first_seen"],
        [{ scope: "has space" }, "records[0].scope"],
        [{ operation: "x".repeat(201) }, "records[0].operation"],
        [{ operation: "tools/call caf\u00e9" }, "records[0].operation"],
        [{ audience: "nul\u0000" }, "records[0].audience"],
        [{ token: { case: "tokenSha256", value: new Uint8Array(5) } }, "records[0].token_sha256"],
        [{ token: { case: "tokenId", value: "tok_bad" } }, "records[0].token_id"],
        [{ token: { case: undefined } }, "records[0].token_id"],
      ];
      for (const [extra, field] of cases) {
        const f = await failure(activity.reportUsage({ records: [rec(id, extra)] }));
        expect(f, field).toMatchObject({ code: Code.InvalidArgument });
        expect(f!.message.startsWith(`${field}:`), `${field}: ${f!.message}`).toBe(true);
      }
      expect(await failure(activity.reportUsage({ records: Array.from({ length: 10_001 }, () => rec(id)) }))).toMatchObject({ code: Code.InvalidArgument });
      expect(await failure(activity.reportUsage({ dropped: -5n }))).toMatchObject({ code: Code.InvalidArgument, message: expect.stringMatching(/^dropped:/) });
      // Ancient or future times: dropped and counted as stale, nothing written.
      const day = 86_400_000;
      const res = await activity.reportUsage({
        records: [
          rec(id, { firstSeen: timestampFromMs(Date.now() - 2 * day), lastSeen: timestampFromMs(Date.now() - 2 * day) }),
          rec(id, { firstSeen: timestampFromMs(Date.now()), lastSeen: timestampFromMs(Date.now() + day) }),
        ],
      });
      expect(res).toMatchObject({ accepted: 0n, rejected: 0n, stale: 2n });
      expect(await usageOf(seen.agentId)).toEqual([]);
    });
  }
});

describe("the SDK's usage reports", () => {
  it("count what verify decided, including cache hits, and feed the trust score", async () => {
    const a = await agentWithToken("api", ["read", "list"]);
    const v = createVerifier({ endpoint: `http://${h.grpcAddress}`, apiKey: rsKey, audience: "api", reportUsage: { intervalMs: 60_000 } });
    try {
      await v.ready();
      for (let i = 0; i < 5; i++) expect((await v.verify(a.token, { scope: "read" })).active).toBe(true);
      await v.verify(a.token, { scope: "list" });
      for (let i = 0; i < 2; i++) expect(await v.verify(a.token, { scope: "admin" })).toEqual({ active: false, reason: "scope_not_granted" });
      expect(v.metrics()).toMatchObject({ cacheHits: 7, networkIntrospections: 1, usagePending: 3 });
      await v.flushUsage();
      expect(v.metrics()).toMatchObject({ usageReported: 8, usagePending: 0, usageDropped: 0, usageRejected: 0 });
      expect(await usageOf(a.agentId)).toEqual([
        { outcome: "allowed", scope: "list", n: 1 },
        { outcome: "allowed", scope: "read", n: 5 },
        { outcome: "scope_not_granted", scope: "admin", n: 2 },
      ]);
      const score = (await createClient(ActivityService, h.grpcTransport).getTrustScore({ agentId: a.agentId })).trustScore!;
      expect(score.factors.find((f) => f.name === "scope_adherence")).toMatchObject({ count: 2n });
      expect(score.factors.find((f) => f.name === "request_rate")!.detail).toContain("8 reported usage in the last 1h");
    } finally {
      await v.close();
    }
  });

  it("name what the requests did: a line per operation, in the store and the verifier's metrics", async () => {
    const a = await agentWithToken("api", ["read"]);
    const v = createVerifier({ endpoint: `http://${h.grpcAddress}`, apiKey: rsKey, audience: "api", reportUsage: { intervalMs: 60_000 } });
    try {
      await v.ready();
      for (let i = 0; i < 3; i++) await v.verify(a.token, { scope: "read", operation: "tools/call search" });
      await v.verify(a.token, { scope: "read", operation: "tools/call fetch" });
      await v.verify(a.token, { scope: "read" });
      await expect(v.verify(a.token, { operation: "tools/call \u0000" })).rejects.toThrow(/operation must be at most 200 printable ASCII characters/);
      await v.flushUsage();
      expect(v.metrics()).toMatchObject({ usageReported: 5, usageRejected: 0 });
      const { rows } = await sql<{ operation: string; n: string }>`
        select operation, sum(n) as n from usage_counts where agent_id = ${a.agentId} group by operation order by operation`.execute(h.ctx.db);
      expect(rows.map((r) => [r.operation, Number(r.n)])).toEqual([
        ["", 1],
        ["tools/call fetch", 1],
        ["tools/call search", 3],
      ]);
    } finally {
      await v.close();
    }
  });

  it("keep bounded memory while the server is away, merge counts, and report the drops", async () => {
    const a = await agentWithToken("api");
    const dead = createClient(ActivityService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${await freePort()}` }));
    const live = createClient(ActivityService, transport("grpc", rsKey));
    // The first report goes to the dead endpoint, the next to the live one.
    const r = new UsageReporter([dead, live], "api", { intervalMs: 60_000, maxLines: 2 });
    const t = Date.now();
    for (let i = 0; i < 4; i++) r.count(a.tokenId, "", "read", "", "allowed", t);
    r.count(a.tokenId, "", "write", "", "scope_not_granted", t);
    r.count(a.tokenId, "", "other", "", "allowed", t); // a third line: over maxLines, dropped
    expect(r.metrics()).toMatchObject({ usagePending: 2, usageDropped: 1 });
    await r.flush();
    expect(r.metrics()).toMatchObject({ usageReportErrors: 1, usagePending: 2, usageReported: 0, usageDropped: 1 });
    r.count(a.tokenId, "", "read", "", "allowed", t + 1);
    await r.flush();
    expect(r.metrics()).toMatchObject({ usageReported: 6, usagePending: 0, usageDropped: 1 });
    expect(await usageOf(a.agentId)).toEqual([
      { outcome: "allowed", scope: "read", n: 5 },
      { outcome: "scope_not_granted", scope: "write", n: 1 },
    ]);
    const { rows } = await sql<{ n: string }>`select coalesce(sum(n), 0) as n from usage_drops`.execute(h.ctx.db);
    expect(Number(rows[0]!.n)).toBe(1);
    await r.close();
  });
});

describe("timestamps out of range", () => {
  it("are INVALID_ARGUMENT naming the field in ListTrustScores and GetActivity", async () => {
    const a = await agentWithToken("api");
    const activity = createClient(ActivityService, h.grpcTransport);
    const far = { seconds: 10n ** 15n, nanos: 0 };
    expect(await failure(activity.listTrustScores({ agentId: a.agentId, since: far }))).toMatchObject({ code: Code.InvalidArgument, message: expect.stringMatching(/^since:/) });
    expect(await failure(activity.listTrustScores({ agentId: a.agentId, until: far }))).toMatchObject({ code: Code.InvalidArgument, message: expect.stringMatching(/^until:/) });
    expect(await failure(activity.getActivity({ agentId: a.agentId, since: far }))).toMatchObject({ code: Code.InvalidArgument, message: expect.stringMatching(/^since:/) });
    expect(await failure(activity.getActivity({ agentId: a.agentId, until: { seconds: 0n, nanos: -1 } }))).toMatchObject({ code: Code.InvalidArgument, message: expect.stringMatching(/^until:/) });
  });

  it("ReportActivity refuses control characters in detail, naming it", async () => {
    const a = await agentWithToken("api");
    const activity = createClient(ActivityService, transport("grpc", rsKey));
    const { ActivityKind } = await import("../gen/agentid/v1/activity_pb.js");
    expect(await failure(activity.reportActivity({ tokenId: a.tokenId, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "a\u0000b" }))).toMatchObject({
      code: Code.InvalidArgument,
      message: expect.stringMatching(/^detail:/),
    });
  });
});
