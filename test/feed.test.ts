import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, publicKey, startHarness, type Harness } from "./support/harness.js";
import { StreamRecorder } from "./support/feed.js";
import { appendLogRows } from "../bench/lib/sequenced-db.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

async function agentWithTokens(n: number) {
  const { agent } = await h.grpc.agents.registerAgent({ name: "feed", publicKey: publicKey() });
  const tokens = await Promise.all(Array.from({ length: n }, () => h.grpc.tokens.issue({ agentId: agent!.agentId })));
  return { agentId: agent!.agentId, tokens };
}

describe.each(["grpc", "connect"] as const)("WatchRevocations over %s", (transport) => {
  it("delivers a revocation to an open stream as it commits", async () => {
    const { agentId, tokens } = await agentWithTokens(1);
    const rec = new StreamRecorder(h[transport], 0n);
    // The first Progress marks the end of the backlog.
    await rec.until((r) => r.progress.length > 0);
    const backlog = rec.revisions.length;

    const res = await h.grpc.tokens.revoke({ target: { case: "tokenId", value: tokens[0]!.tokenId }, reason: "leaked" });
    await rec.until((r) => r.revisions.includes(res.revision));
    const e = rec.events.find((x) => x.revision === res.revision)!;
    expect(e.target).toEqual({ case: "tokenId", value: tokens[0]!.tokenId });
    expect(e.tokenAgentId).toBe(agentId);
    expect(e.reason).toBe("leaked");
    expect(e.revokedBy).not.toBe("");
    expect(e.expiresAt).toBeDefined();

    const kill = await h.grpc.tokens.revoke({ target: { case: "agentId", value: agentId }, reason: "rogue" });
    await rec.until((r) => r.revisions.includes(kill.revision));
    const k = rec.events.find((x) => x.revision === kill.revision)!;
    expect(k.target).toEqual({ case: "agentId", value: agentId });
    expect(k.expiresAt).toBeUndefined();
    expect(rec.revisions.length).toBe(backlog + 2);
    await rec.stop();
  });

  it("replays everything after a revision, then continues live, with no duplicates", async () => {
    const { tokens } = await agentWithTokens(4);
    const revs: bigint[] = [];
    for (const t of tokens.slice(0, 2)) {
      revs.push((await h.grpc.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "r" })).revision);
    }
    // Resume as a client that had seen the first of the two.
    const rec = new StreamRecorder(h[transport], revs[0]!);
    await rec.until((r) => r.progress.length > 0);
    expect(rec.revisions[0]).toBe(revs[1]);
    for (const t of tokens.slice(2)) {
      revs.push((await h.grpc.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "r" })).revision);
    }
    await rec.until((r) => r.revisions.includes(revs[3]!));
    // Other suites' events may interleave; ours arrive in order, each once, and the whole
    // stream is strictly increasing and gap-free.
    const got = rec.revisions;
    expect(got.filter((r) => revs.includes(r))).toEqual(revs.slice(1));
    got.forEach((r, i) => i > 0 && expect(r).toBe(got[i - 1]! + 1n));
    await rec.stop();
  });

  it("sends Progress after the backlog and at least every second when idle", async () => {
    const rec = new StreamRecorder(h[transport], 0n);
    await rec.until((r) => r.progress.length >= 3, 10_000);
    const head = rec.progress[rec.progress.length - 1]!;
    // A bookmark covers every event delivered before it.
    const lastEvent = rec.revisions[rec.revisions.length - 1] ?? 0n;
    expect(head).toBeGreaterThanOrEqual(lastEvent);
    await rec.stop();
  });
});

describe("the revocation log under concurrent revokes", () => {
  it("is gap-free and in commit order when many connections revoke at once", async () => {
    const { tokens } = await agentWithTokens(120);
    const others = await Promise.all(Array.from({ length: 10 }, () => agentWithTokens(1)));
    const watchers = [new StreamRecorder(h.grpc, 0n), new StreamRecorder(h.connect, 0n)];
    await Promise.all(watchers.map((w) => w.until((r) => r.progress.length > 0)));
    const start = watchers[0]!.progress[0]!;

    // Token and agent revocations interleaved, from both transports (the server's pool has 10
    // connections, so these really commit concurrently).
    const results = await Promise.all([
      ...tokens.map((t, i) =>
        h.transports[i % 2]!.clients.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: `t${i}` }),
      ),
      ...others.map((o) => h.grpc.tokens.revoke({ target: { case: "agentId", value: o.agentId }, reason: "kill" })),
    ]);
    const revisions = results.map((r) => r.revision).sort((a, b) => (a < b ? -1 : 1));
    expect(new Set(revisions).size).toBe(130);

    for (const w of watchers) {
      await w.until((r) => revisions.every((x) => r.revisions.includes(x)), 15_000);
      const seen = w.revisions.filter((r) => r > start);
      // Every revision after the start, exactly once, strictly in order.
      seen.forEach((r, i) => expect(r).toBe(start + BigInt(i) + 1n));
      for (const r of revisions) expect(seen).toContain(r);
      await w.stop();
    }
  });
});

describe("a replica that just started", () => {
  it("replays from the log, not from its empty memory, for a cursor older than its start", async () => {
    const databaseUrl = await createTestDatabase();
    const fresh = await startHarness({ databaseUrl });
    await fresh.close();
    const head = await appendLogRows(databaseUrl, 50);
    const h2 = await startHarness({ databaseUrl });
    try {
      const rec = new StreamRecorder(h2.grpc, 10n);
      await rec.until((r) => r.progress.length > 0);
      expect(rec.revisions).toEqual(Array.from({ length: Number(head) - 10 }, (_, i) => BigInt(11 + i)));
      await rec.stop();
    } finally {
      await h2.close();
    }
  });
});

describe("fan-out encoding", () => {
  it("writes one shared, frozen frame's bytes to every gRPC stream", async () => {
    const { feedFrames } = await import("../src/server/messages.js");
    const { grpcServiceDefinition } = await import("../src/server/grpc.js");
    const { Frame } = await import("../src/feed/frame.js");
    const { RevocationService, WatchRevocationsResponseSchema } = await import("../gen/agentid/v1/revocation_pb.js");
    const { fromBinary } = await import("@bufbuild/protobuf");
    const serialize = grpcServiceDefinition(RevocationService).watchRevocations!.responseSerialize;
    const event = { revision: 7n, tokenId: "tok_x", agentId: "agt_x", reason: "r", revokedBy: "key:k", revokedAt: new Date(), expiresAt: null, audiences: ["a"] };
    const { message, bytes } = feedFrames.events([event]);
    const frame = new Frame("events", 6n, 7n, message, bytes);
    // What goes on the wire is the frame's own bytes, whichever stream writes it.
    expect(Buffer.compare(serialize(frame), Buffer.from(bytes))).toBe(0);
    expect(fromBinary(WatchRevocationsResponseSchema, serialize(frame)).events.map((e) => e.revision)).toEqual([7n]);
    // Nothing can change a shared frame after it was encoded.
    expect(Object.isFrozen(frame.message) && Object.isFrozen(frame.message.events[0])).toBe(true);
    expect(() => ((frame.message.events[0] as { reason: string }).reason = "changed")).toThrow();
  });
});
