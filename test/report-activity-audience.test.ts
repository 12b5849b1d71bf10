import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Role, KeyService } from "../gen/agentid/v1/key_pb.js";
import { PolicyKind, PolicyService } from "../gen/agentid/v1/policy_pb.js";
import { ActivityKind, ActivityService } from "../gen/agentid/v1/activity_pb.js";
import { AgentStatus } from "../gen/agentid/v1/agent_pb.js";
import { bearer, publicKey, startHarness, type Harness } from "./support/harness.js";

// Issue 9, point 3: a resource server may report only about agents whose tokens it can see.
let h: Harness;
let rsKey: string;

function transports(key: string): { name: string; t: Transport }[] {
  return [
    { name: "grpc", t: createGrpcTransport({ baseUrl: `http://${h.grpcAddress}`, interceptors: [bearer(key)] }) },
    {
      name: "connect",
      t: createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors: [bearer(key)] }),
    },
  ];
}

beforeAll(async () => {
  h = await startHarness();
  rsKey = (await createClient(KeyService, h.grpcTransport).createApiKey({ name: "api", role: Role.RESOURCE_SERVER, audiences: ["api"] })).secret;
  await createClient(PolicyService, h.grpcTransport).createPolicy({ policy: { name: "low-trust", kind: PolicyKind.TRUST_BELOW, threshold: 40 } });
});
afterAll(() => h?.close());

async function agentWithToken(audience: string) {
  const { agent } = await h.grpc.agents.registerAgent({ name: "victim", publicKey: publicKey(), allowedScopes: ["read"], allowedAudiences: [audience] });
  const { token, tokenId } = await h.grpc.tokens.issue({ agentId: agent!.agentId, scopes: ["read"], audiences: [audience] });
  return { agentId: agent!.agentId, token, tokenId };
}

const codeOf = async (p: Promise<unknown>) => ConnectError.from(await p.then(() => null, (e: unknown) => e)).code;

describe("ReportActivity from a resource server", () => {
  for (const name of ["grpc", "connect"]) {
    it(`cannot drive down, read or revoke an agent it cannot see (${name})`, async () => {
      const victim = await agentWithToken("other");
      const activity = createClient(ActivityService, transports(rsKey).find((x) => x.name === name)!.t);
      const admin = createClient(ActivityService, h.grpcTransport);
      const before = (await admin.getTrustScore({ agentId: victim.agentId })).trustScore!.score;
      // Today's attack: report incidents by agent id until a trust policy revokes it.
      const replies = [];
      for (let i = 0; i < 4; i++) {
        replies.push(await activity.reportActivity({ agentId: victim.agentId, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "x" }).catch(() => undefined));
      }
      expect((await h.grpc.agents.getAgent({ agentId: victim.agentId })).agent!.status).toBe(AgentStatus.ACTIVE);
      expect(replies.filter((r) => r?.trustScore !== undefined)).toEqual([]);
      expect(await codeOf(activity.reportActivity({ agentId: victim.agentId, kind: ActivityKind.ANOMALOUS_REQUEST }))).toBe(Code.InvalidArgument);
      // By token id or token: the same answer as for a token that does not exist.
      const unseen = await codeOf(activity.reportActivity({ tokenId: victim.tokenId, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "x" }));
      const missing = await codeOf(activity.reportActivity({ tokenId: "tok_AAAAAAAAAAAAAAAAAAAAAA", kind: ActivityKind.ANOMALOUS_REQUEST }));
      expect(unseen).toBe(Code.NotFound);
      expect(missing).toBe(Code.NotFound);
      const byToken = await codeOf(activity.reportActivity({ token: victim.token, kind: ActivityKind.ANOMALOUS_REQUEST }));
      expect(byToken).toBe(Code.NotFound);

      expect((await h.grpc.agents.getAgent({ agentId: victim.agentId })).agent!.status).toBe(AgentStatus.ACTIVE);
      expect((await admin.getTrustScore({ agentId: victim.agentId })).trustScore!.score).toBe(before);
      const { rows } = await (await import("kysely")).sql<{ n: string }>`
        select count(*) as n from activity_reports where agent_id = ${victim.agentId}`.execute(h.ctx.db);
      expect(Number(rows[0]!.n)).toBe(0);
    });

    it(`reports by token about an agent it can see, and reads no score back (${name})`, async () => {
      const seen = await agentWithToken("api");
      const activity = createClient(ActivityService, transports(rsKey).find((x) => x.name === name)!.t);
      const r = await activity.reportActivity({ tokenId: seen.tokenId, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "odd" });
      expect(r.trustScore).toBeUndefined();
      const r2 = await activity.reportActivity({ token: seen.token, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "odd" });
      expect(r2.trustScore).toBeUndefined();
      const admin = createClient(ActivityService, h.grpcTransport);
      expect((await admin.getTrustScore({ agentId: seen.agentId })).trustScore!.score).toBeLessThan(60);
    });
  }
});
