// Slow consumers are cut off without hurting anyone else; stream limits answer RESOURCE_EXHAUSTED.
import http2 from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WatchRevocationsRequestSchema, WatchRevocationsResponseSchema, type WatchRevocationsResponse } from "../gen/agentid/v1/revocation_pb.js";
import { bearer, clientsFor, publicKey, startHarness, type Clients, type Harness } from "./support/harness.js";
import { caughtUp, collect, logTruth } from "./support/feed.js";
import type { Config } from "../src/server/config.js";
import { until } from "./support/until.js";

const open: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of open.splice(0).reverse()) await f().catch(() => {});
});

async function harness(config: Partial<Config>): Promise<Harness> {
  const h = await startHarness({ config });
  open.push(() => h.close());
  return h;
}

/**
 * A gRPC watcher that reads nothing: a small HTTP/2 window (1 KiB), and its stream paused. Returns
 * a function that starts reading again and resolves with the status the server ended the stream
 * with, and the messages it read, decoded as they arrive.
 */
function stalledWatcher(grpcAddress: string, after: bigint, apiKey: string, windowBytes = 1024) {
  const session = http2.connect(`http://${grpcAddress}`, { settings: { initialWindowSize: windowBytes } });
  open.push(async () => session.destroy());
  const body = toBinary(WatchRevocationsRequestSchema, create(WatchRevocationsRequestSchema, { afterRevision: after }));
  const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), Buffer.from(body)]);
  const stream = session.request({
    ":method": "POST",
    ":path": "/agentid.v1.RevocationService/WatchRevocations",
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer ${apiKey}`,
  });
  stream.end(frame);
  stream.pause();
  const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.on("trailers", (t) => resolve(t)));
  const messages: WatchRevocationsResponse[] = [];
  let pending = Buffer.alloc(0);
  const resume = async () => {
    stream.on("data", (chunk: Buffer) => {
      // gRPC's length-prefixed messages, split across DATA frames as the window allows.
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const n = pending.readUInt32BE(1);
        messages.push(fromBinary(WatchRevocationsResponseSchema, pending.subarray(5, 5 + n)));
        pending = pending.subarray(5 + n);
      }
    });
    stream.resume();
    return trailers;
  };
  return Object.assign(resume, { messages });
}

async function revokeMany(c: Clients, n: number): Promise<bigint> {
  const { agent } = await c.agents.registerAgent({ name: "slow", publicKey: publicKey() });
  let last = 0n;
  for (let i = 0; i < n; i += 20) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(20, n - i) }, async () => {
        const t = await c.tokens.issue({ agentId: agent!.agentId, ttl: durationFromMs(600_000) });
        return (await c.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "load" })).revision;
      }),
    );
    for (const r of batch) if (r > last) last = r;
  }
  return last;
}

describe("slow consumers", () => {
  it("cuts off a watcher that cannot keep up, with a resume point, and keeps serving the others", async () => {
    const h = await harness({ watchQueueLimit: 20 });
    const healthy = [0, 1].map((i) => collect(`healthy${i}`, [`http://${h.grpcAddress}`], 0, h.adminKey));
    for (const c of healthy) open.push(() => c.follower.close());
    const resume = stalledWatcher(h.grpcAddress, 0n, h.adminKey);
    await caughtUp(healthy, 0n);
    while (h.ctx.feed.watcherCount < 3) await new Promise((r) => setTimeout(r, 10));

    // Revocations arrive in batches (one message per batch), so how many it takes to fill 20
    // messages depends on how they coalesce: revoke until the stalled watcher is dropped.
    let head = 0n;
    for (let round = 0; round < 50 && h.ctx.feed.watcherCount > 2; round++) head = await revokeMany(h.grpc, 40);
    // The stalled watcher is dropped (its queue freed); the healthy ones got everything, in order.
    while (h.ctx.feed.watcherCount > 2) await new Promise((r) => setTimeout(r, 10));
    await caughtUp(healthy, head);
    const truth = await logTruth(h.databaseUrl);
    for (const c of healthy) expect(c.seen).toEqual(truth);

    const trailers = await resume();
    expect(Number(trailers["grpc-status"])).toBe(Code.ResourceExhausted);
    const message = decodeURIComponent(String(trailers["grpc-message"]));
    expect(message).toMatch(/fell more than 20 messages behind; resume with after_revision=\d+/);
    // Resuming from the revision it names delivers the rest, gap-free.
    const from = BigInt(/after_revision=(\d+)/.exec(message)![1]!);
    const rest: bigint[] = [];
    for await (const m of h.grpc.revocations.watchRevocations({ afterRevision: from })) {
      rest.push(...m.events.map((e) => e.revision));
      if (m.progress && m.progress.revision >= head) break;
    }
    expect(rest).toEqual(truth.filter((t) => t.revision > from).map((t) => t.revision));
  });
});

describe("a slow reader", () => {
  it("gets its backlog joined into few messages: what it has not read waits in the feed's queue, not message by message in the transport", async () => {
    const h = await harness({});
    const { agent } = await h.grpc.agents.registerAgent({ name: "slow", publicKey: publicKey() });
    const tokens = [];
    for (let i = 0; i < 60; i++) tokens.push((await h.grpc.tokens.issue({ agentId: agent!.agentId, ttl: durationFromMs(600_000) })).tokenId);
    // A window of 64 bytes: its first bookmark gets through, then about half an event.
    const resume = stalledWatcher(h.grpcAddress, 0n, h.adminKey, 64);
    while (h.ctx.feed.stats().synced < 1) await new Promise((r) => setTimeout(r, 10));
    // One Revoke at a time: about one batch, and one frame, each.
    const revisions: bigint[] = [];
    for (const t of tokens) revisions.push((await h.grpc.tokens.revoke({ target: { case: "tokenId", value: t }, reason: "slow" })).revision);
    void resume();
    await until(
      async () => resume.messages.flatMap((m) => m.events).length,
      (n) => n >= 60,
    );
    expect(resume.messages.flatMap((m) => m.events.map((e) => e.revision))).toEqual(revisions);
    // The first event's message was in flight when the reader stalled; the rest waited in its
    // queue and left joined (a bookmark between batches splits a run). Taken while the transport
    // accepted more, 16 or more would have queued inside grpc-js, one message each.
    const withEvents = resume.messages.filter((m) => m.events.length > 0).length;
    expect(withEvents, `events came in ${resume.messages.map((m) => m.events.length).join(", ")}`).toBeLessThanOrEqual(6);
  });
});

describe("stream limits", () => {
  async function firstMessage(c: Clients, signal: AbortSignal): Promise<Code | "ok"> {
    try {
      const it = c.revocations.watchRevocations({ afterRevision: 0n }, { signal })[Symbol.asyncIterator]();
      await it.next();
      return "ok";
    } catch (err) {
      return ConnectError.from(err).code;
    }
  }

  it("limits streams per connection and in total, with clear errors", async () => {
    const h = await harness({ maxWatchers: 4, maxWatchersPerConnection: 2 });
    const conn = () => clientsFor(createGrpcTransport({ baseUrl: `http://${h.grpcAddress}`, interceptors: [bearer(h.adminKey)] }));
    const one = conn();
    const aborts: AbortController[] = [];
    const watch = (c: Clients) => {
      const a = new AbortController();
      aborts.push(a);
      open.push(async () => a.abort());
      return firstMessage(c, a.signal);
    };
    expect(await watch(one)).toBe("ok");
    expect(await watch(one)).toBe("ok");
    let err: ConnectError | undefined;
    try {
      const it = one.revocations.watchRevocations({ afterRevision: 0n })[Symbol.asyncIterator]();
      await it.next();
    } catch (e) {
      err = ConnectError.from(e);
    }
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.rawMessage).toMatch(/AGENTID_MAX_WATCHERS_PER_CONNECTION/);

    // Another connection may open streams, up to the server's total.
    const two = conn();
    expect(await watch(two)).toBe("ok");
    expect(await watch(two)).toBe("ok");
    const three = conn();
    try {
      const it = three.revocations.watchRevocations({ afterRevision: 0n })[Symbol.asyncIterator]();
      await it.next();
      err = undefined;
    } catch (e) {
      err = ConnectError.from(e);
    }
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.rawMessage).toMatch(/AGENTID_MAX_WATCHERS\)/);

    // Closing a stream frees its slot.
    aborts[0]!.abort();
    while (h.ctx.feed.watcherCount > 3) await new Promise((r) => setTimeout(r, 10));
    expect(await watch(three)).toBe("ok");
  });

  it("answers a connection that comes back before its retry-after only when that has passed", async () => {
    const h = await harness({ maxWatchersPerConnection: 1 });
    const c = clientsFor(createGrpcTransport({ baseUrl: `http://${h.grpcAddress}`, interceptors: [bearer(h.adminKey)] }));
    const holding = new AbortController();
    open.push(async () => holding.abort());
    expect(await firstMessage(c, holding.signal)).toBe("ok");
    const attempt = async () => {
      try {
        await c.revocations.watchRevocations({ afterRevision: 0n })[Symbol.asyncIterator]().next();
        return undefined;
      } catch (e) {
        return ConnectError.from(e);
      }
    };
    // Refused at once, and told how long to wait.
    const first = await attempt();
    expect(first?.code).toBe(Code.ResourceExhausted);
    const advice = Number(first?.metadata.get("retry-after-ms"));
    expect(advice).toBeGreaterThan(0);
    // Back at once: the answer is held. Other calls on the connection go on meanwhile.
    let early: { answer: ConnectError | undefined } | undefined;
    const answered = attempt().then((e) => (early = { answer: e }));
    await c.agents.listAgents({});
    expect(early).toBeUndefined();
    // ...then it is the same refusal, with advice again.
    await answered;
    expect(early!.answer?.code).toBe(Code.ResourceExhausted);
    expect(Number(early!.answer?.metadata.get("retry-after-ms"))).toBeGreaterThan(0);
    expect(h.ctx.feed.stats().refusals).toBeGreaterThanOrEqual(2);
  });
});
