// The feed filtered by audience (issue 9.4): a resource_server key sees token events for its
// audiences' tokens and agent events for agents that held such a token, each whole, as its log
// entry is (issue 24.7); bookmarks still advance past what it does not see, so it can resume,
// gap-free.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { bearer, publicKey, startHarness, type Harness } from "./support/harness.js";
import { StreamRecorder } from "./support/feed.js";

let h: Harness;
let ordersKey: string;
let ordersKey2: string;
/** Targets (token ids and agent ids) an "orders" resource server is entitled to hear about. */
const entitled = new Set<string>();
const everything = new Set<string>();

beforeAll(async () => {
  h = await startHarness();
  const keys = createClient(KeyService, h.grpcTransport);
  ordersKey = (await keys.createApiKey({ name: "orders api", role: Role.RESOURCE_SERVER, audiences: ["orders"] })).secret;
  // Another key with the same audiences: the same view.
  ordersKey2 = (await keys.createApiKey({ name: "orders api 2", role: Role.RESOURCE_SERVER, audiences: ["orders", "orders"] })).secret;
});
afterAll(() => h?.close());

/** An agent with one token per audience list; records who may see what. */
async function agentWith(audienceLists: string[][]) {
  const { agent } = await h.grpc.agents.registerAgent({ name: "aud", publicKey: publicKey(), allowedAudiences: [...new Set(audienceLists.flat())] });
  const agentId = agent!.agentId;
  const tokens: string[] = [];
  for (const audiences of audienceLists) {
    const t = await h.grpc.tokens.issue({ agentId, audiences });
    tokens.push(t.tokenId);
    everything.add(t.tokenId);
    if (audiences.includes("orders")) entitled.add(t.tokenId);
  }
  everything.add(agentId);
  if (audienceLists.some((a) => a.includes("orders"))) entitled.add(agentId);
  return { agentId, tokens };
}

const revoke = async (target: { case: "tokenId" | "agentId"; value: string }) =>
  (await h.grpc.tokens.revoke({ target, reason: "secret reason" })).revision;
const target = (e: { target: { value?: string } }) => e.target.value ?? "";

describe.each(["grpc", "connect"] as const)("audience filter over %s", (transport) => {
  it("sends a resource server only its audiences' events, each whole as in its log, and bookmarks past the rest", async () => {
    const admin = new StreamRecorder(h[transport], 0n);
    const rs = new StreamRecorder(h.as(ordersKey)[transport], 0n);
    await Promise.all([admin, rs].map((r) => r.until((x) => x.progress.length > 0)));

    const a = await agentWith([["orders"], ["billing"], ["billing", "orders"]]);
    const billingOnly = await agentWith([["billing"]]);
    const ordersAgent = await agentWith([["orders"]]);
    const revs: bigint[] = [];
    for (const t of a.tokens) revs.push(await revoke({ case: "tokenId", value: t }));
    revs.push(await revoke({ case: "agentId", value: billingOnly.agentId }));
    revs.push(await revoke({ case: "agentId", value: ordersAgent.agentId }));
    const last = revs.at(-1)!;

    await admin.until((x) => x.revisions.includes(last));
    // The filtered stream's bookmarks cover every revision, seen or not.
    await rs.until((x) => x.progress.some((p) => p >= last), 10_000);
    const seen = rs.events.filter((e) => revs.includes(e.revision));
    expect(seen.map(target)).toEqual([a.tokens[0], a.tokens[2], ordersAgent.agentId]);
    for (const e of rs.events) expect(entitled.has(target(e)) || !everything.has(target(e))).toBe(true);
    // One rule on both surfaces: what the log shows this key of a revocation, the feed sends it.
    const audit = createClient(AuditService, createGrpcTransport({ baseUrl: `http://${h.grpcAddress}`, interceptors: [bearer(ordersKey)] }));
    const log = (await audit.listEntries({ pageSize: 1000 })).entries;
    for (const e of seen) {
      const entry = log.find((x) => (e.target.case === "tokenId" ? x.kind === "token.revoked" && x.tokenId === target(e) : x.kind === "agent.revoked" && x.agentId === target(e)));
      expect(entry, `${e.target.case} ${target(e)}`).toBeDefined();
      expect([e.reason, e.revokedBy]).toEqual([entry!.reason, entry!.actor]);
      expect(e.reason).toBe("secret reason");
    }
    // The token's agent stays, so the SDK can evict by agent too.
    expect(seen[0]!.tokenAgentId).toBe(a.agentId);
    // Admins see everything, in full.
    const all = admin.events.filter((e) => everything.has(target(e)) && revs.includes(e.revision));
    expect(all.map((e) => e.revision)).toEqual(revs);
    expect(all.every((e) => e.reason === "secret reason" && e.revokedBy !== "")).toBe(true);
    await admin.stop();
    await rs.stop();
  });

  it("a filtered stream resumes from its last bookmark and never misses an event it is entitled to", async () => {
    const first = new StreamRecorder(h.as(ordersKey)[transport], 0n);
    await first.until((x) => x.progress.length > 0);
    const x = await agentWith([["orders"], ["billing"], ["orders"], ["billing"]]);
    const revs: bigint[] = [];
    for (const t of x.tokens.slice(0, 2)) revs.push(await revoke({ case: "tokenId", value: t }));
    // Stop at a bookmark that covers the billing event this stream did not see.
    await first.until((r) => r.progress.some((p) => p >= revs[1]!));
    await first.stop();
    const resumeAt = first.progress.at(-1)!;
    expect(resumeAt).toBeGreaterThanOrEqual(revs[1]!);
    for (const t of x.tokens.slice(2)) revs.push(await revoke({ case: "tokenId", value: t }));
    await revoke({ case: "agentId", value: x.agentId }).then((r) => revs.push(r));

    const second = new StreamRecorder(h.as(ordersKey)[transport], resumeAt);
    await second.until((r) => r.progress.some((p) => p >= revs.at(-1)!));
    await second.stop();
    // Across both streams: every entitled event of the log, each once, in revision order; nothing else.
    const fromZero = new StreamRecorder(h[transport], 0n);
    await fromZero.until((r) => r.revisions.includes(revs.at(-1)!));
    await fromZero.stop();
    const truth = fromZero.events.filter((e) => entitled.has(target(e)) || !everything.has(target(e)));
    const got = [...first.events, ...second.events];
    expect(got.map((e) => e.revision)).toEqual(truth.map((e) => e.revision));
    expect(got.filter((e) => x.tokens.includes(target(e)) || target(e) === x.agentId).map(target)).toEqual([x.tokens[0], x.tokens[2], x.agentId]);
  });
});

describe("frames per view", () => {
  it("streams with the same audiences share one view; each distinct audience set is one more", async () => {
    const recs = [
      new StreamRecorder(h.grpc, 0n),
      new StreamRecorder(h.as(ordersKey).grpc, 0n),
      new StreamRecorder(h.as(ordersKey2).grpc, 0n),
      new StreamRecorder(h.as(ordersKey2).connect, 0n),
    ];
    await Promise.all(recs.map((r) => r.until((x) => x.progress.length > 0)));
    const s = h.ctx.feed.stats();
    expect(s.synced).toBe(4);
    expect(s.views).toBe(2);
    await Promise.all(recs.map((r) => r.stop()));
  });
});
