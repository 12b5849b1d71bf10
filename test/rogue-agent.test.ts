// The product brief's scenario end to end: a real server, a real SDK-guarded resource server
// (examples/resource-server.ts), an agent going from its baseline to a spike on scopes it never
// used. Time is compressed by configuration: a 2 s trust window stands for an hour.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { describeRogueAgent, runRogueAgent, type RogueAgentResult } from "../examples/rogue-agent.js";
import { startHarness, type Harness } from "./support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    config: { activityBucketMs: 1000, trustWindowMs: 2000, trustBaselineWindows: 10, trustMinBaseline: 20 },
  });
});
afterAll(() => h?.close());

describe("a rogue agent behind the SDK", () => {
  let r: RogueAgentResult;

  it("is noticed, revoked by policy, refused by the SDK, and its trail shows the shift", async () => {
    r = await runRogueAgent({
      httpUrl: `http://127.0.0.1:${h.server.httpPort}`,
      grpcUrl: `http://${h.grpcAddress}`,
      adminKey: h.adminKey,
      windowMs: 2000,
      bucketMs: 1000,
    });
    console.log(describeRogueAgent(r));

    // 1. The score fell, and the factors say why: the rate against its own baseline, and new scopes.
    const last = r.scores.find((s) => s.score < 40)!;
    expect(last).toBeDefined();
    const f = Object.fromEntries(last.factors.map((x) => [x.name, x]));
    expect(f.request_rate!.contribution).toBeLessThan(0);
    expect(f.request_rate!.baseline).toBeGreaterThan(0);
    expect(Number(f.request_rate!.count)).toBeGreaterThan(3 * f.request_rate!.baseline);
    expect(f.request_rate!.detail).toContain("reported usage");
    expect(f.novel_access!.contribution).toBeLessThan(0);
    expect(f.novel_access!.detail).toMatch(/scope:customers:(read|export)/);
    // Before the spike it was trusted.
    expect(r.scores.some((s) => s.score >= 80 && timestampDate(s.computedAt!).getTime() < r.spikeStartedAt)).toBe(true);

    // 2. A policy revoked it.
    expect(r.revokedBy).toBe("policy:low-trust");
    expect(r.revokedReason).toMatch(/^policy low-trust: trust score \d+(\.\d+)? below 40$/);
    expect(r.revokedAt).toBeGreaterThanOrEqual(r.spikeStartedAt);

    // 3. The SDK refused the next request.
    expect(r.refusal.status).toBe(401);
    expect(JSON.parse(r.refusal.body)).toEqual({ error: "invalid_token", reason: "agent_revoked" });

    // 4. The trail: orders only before the spike, customer scopes after it, then the decisions.
    const usage = r.timeline.filter((e) => e.kind === "usage");
    const scopesOf = (e: (typeof usage)[number]) => new Set(e.usage!.counts.filter((c) => c.source === "report").map((c) => c.scope));
    const before = usage.filter((e) => timestampDate(e.usage!.lastSeen!).getTime() < r.spikeStartedAt);
    const after = usage.filter((e) => timestampDate(e.usage!.lastSeen!).getTime() >= r.spikeStartedAt);
    expect(before.length).toBeGreaterThan(3);
    for (const e of before) expect([...scopesOf(e)]).toEqual(["orders:read"]);
    expect(after.some((e) => scopesOf(e).has("customers:read") && scopesOf(e).has("customers:export"))).toBe(true);
    for (const e of usage) expect(e.usage!.reporter).toMatch(/^key:key_/);
    const peak = Math.max(...after.map((e) => Number(e.usage!.total)));
    const steady = Math.max(...before.map((e) => Number(e.usage!.total)));
    expect(peak).toBeGreaterThan(3 * steady);
    const kinds = r.timeline.map((e) => e.kind);
    expect(kinds).toContain("trust_score");
    expect(kinds).toContain("policy");
    const kill = r.timeline.find((e) => e.kind === "policy")!;
    expect(kill.summary).toContain("policy:low-trust");
    // Interleaved, in time order.
    const times = r.timeline.map((e) => timestampDate(e.at!).getTime());
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  }, 180_000);
});
