import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { publicKey, startHarness, type Harness } from "./support/harness.js";

// Issue racing the kill switch (issue 9 point 13): the log's order is the truth. No token.issued
// may follow the agent.revoked entry of its agent, and the kill's tokens_revoked counts exactly
// the tokens issued before it.

let h: Harness;
let audit: Client<typeof AuditService>;
beforeAll(async () => {
  h = await startHarness({ config: { dbPoolSize: 24 } });
  audit = createClient(AuditService, h.grpcTransport);
});
afterAll(() => h?.close());

async function entriesOf(agentId: string) {
  const out = [];
  let pageToken = "";
  do {
    const page = await audit.listEntries({ agentId, pageSize: 1000, pageToken });
    out.push(...page.entries);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

describe("Issue against a concurrent kill", () => {
  it("never logs an issuance after the kill, and the kill counts every token issued before it", async () => {
    const trials = 12;
    const issuers = 16;
    for (let trial = 0; trial < trials; trial++) {
      const { agent } = await h.grpc.agents.registerAgent({ name: `race-${trial}`, publicKey: publicKey() });
      const agentId = agent!.agentId;
      let issued = 0;
      let refused = 0;
      const issue = async () => {
        for (;;) {
          try {
            await h.grpc.tokens.issue({ agentId });
            issued++;
          } catch (err) {
            expect(ConnectError.from(err).code).toBe(Code.FailedPrecondition);
            refused++;
            return;
          }
        }
      };
      const loops = Array.from({ length: issuers }, issue);
      // Let issuance get going, then pull the switch while it runs.
      await new Promise((r) => setTimeout(r, 20 + trial * 3));
      const kill = await h.grpc.tokens.revoke({ target: { case: "agentId", value: agentId }, reason: "race" });
      await Promise.all(loops);
      expect(refused).toBe(issuers);

      await h.ctx.audit.sync();
      const entries = await entriesOf(agentId);
      const killAt = entries.findIndex((e) => e.kind === "agent.revoked");
      expect(killAt).toBeGreaterThan(0);
      const issuedEntries = entries.filter((e) => e.kind === "token.issued");
      // Every successful Issue is in the log, and all of them before the kill.
      expect(issuedEntries.length).toBe(issued);
      expect(entries.slice(killAt + 1).map((e) => e.kind)).not.toContain("token.issued");
      // Exact count, in the response and in the log entry.
      expect(kill.tokensRevoked).toBe(BigInt(issued));
      expect(entries[killAt]!.detailsJson).toContain(`"tokens_revoked":${issued}`);
    }
  }, 120_000);
});

describe("Issue requests sharing a statement", () => {
  it("are answered each on its own: refusals do not spill onto their neighbours", async () => {
    const active = (await h.grpc.agents.registerAgent({ name: "batch-ok", publicKey: publicKey() })).agent!.agentId;
    const killed = (await h.grpc.agents.registerAgent({ name: "batch-killed", publicKey: publicKey() })).agent!.agentId;
    const scoped = (await h.grpc.agents.registerAgent({ name: "batch-scoped", publicKey: publicKey(), allowedScopes: ["read"] })).agent!.agentId;
    await h.grpc.tokens.revoke({ target: { case: "agentId", value: killed }, reason: "batch" });
    const code = (p: Promise<unknown>) => p.then(() => "ok", (err: unknown) => Code[ConnectError.from(err).code]);
    // Sent in one turn, so the server writes them together.
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => [
        code(h.grpc.tokens.issue({ agentId: active })),
        code(h.grpc.tokens.issue({ agentId: killed })),
        code(h.grpc.tokens.issue({ agentId: scoped, scopes: ["write"] })),
        code(h.grpc.tokens.issue({ agentId: scoped, scopes: ["read"] })),
        code(h.grpc.tokens.issue({ agentId: "agt_NoSuchAgent00000000000" })),
      ]).flat(),
    );
    for (let i = 0; i < answers.length; i += 5) {
      expect(answers.slice(i, i + 5)).toEqual(["ok", "FailedPrecondition", "PermissionDenied", "ok", "NotFound"]);
    }
    await h.ctx.audit.sync();
    const issued = (await entriesOf(scoped)).filter((e) => e.kind === "token.issued");
    expect(issued).toHaveLength(8);
  });
});
