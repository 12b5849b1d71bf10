// Reconnect storms (issue 15): many streams subscribing at once must neither starve Revoke nor be
// refused for a reason the client cannot act on, and every stream must end with every event. The
// streams live in a child process (bench/load/watch-streams.ts) over a few HTTP/2 connections, as
// a fleet of resource servers would; the server under test runs in this process (or as replicas).
// Assertions are counts and completion, never timings.
import { afterEach, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { WatchRevocationsRequestSchema } from "../gen/agentid/v1/revocation_pb.js";
import { Ctl } from "../bench/lib/ctl.js";
import { createTestDatabase, startHarness, type Harness } from "./support/harness.js";
import { CLUSTER_ADMIN_KEY, freePort, replicaClients, startReplica, type Replica } from "../bench/lib/cluster.js";
import { steadyRevoker, workload } from "./support/feed.js";
import { appendLogRows } from "../bench/lib/sequenced-db.js";
import type { Config } from "../src/server/config.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
});

const PATH = "/agentid.v1.RevocationService/WatchRevocations";
const STORM: Partial<Config> = { maxWatchers: 20_000, maxWatchersPerConnection: 1000, maxWatchersPerKey: 20_000 };

interface Report {
  streams: number;
  ready: number;
  closedEarly: number;
  reconnects: number;
  refusedWithoutAdvice: number;
  codes: Record<string, number>;
  firstError: string;
  gaps: number;
  minLast: number;
  maxLast: number;
}

async function fleet(): Promise<Ctl> {
  const c = new Ctl("bench/load/watch-streams.ts");
  await c.ready;
  cleanup.push(() => c.kill());
  return c;
}

function open(c: Ctl, o: { urls: string[]; n: number; key: string; retry?: unknown; perSession?: number }) {
  const body = Buffer.from(toBinary(WatchRevocationsRequestSchema, create(WatchRevocationsRequestSchema, { afterRevision: 0n })));
  return c.send({
    cmd: "open",
    urls: o.urls,
    n: o.n,
    perSession: o.perSession ?? 100,
    path: PATH,
    headers: { authorization: `Bearer ${o.key}` },
    body: body.toString("base64"),
    after: 0,
    record: false,
    retry: o.retry,
    wait: false,
  });
}

/** Polls the fleet until `done` holds; a hang guard (not a timing claim) fails with the last report. */
async function until(c: Ctl, done: (r: Report) => boolean, limitMs = 300_000, server?: Harness): Promise<Report> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const r = await c.send<Report>({ cmd: "report" });
    if (done(r)) return r;
    if (Date.now() > deadline) throw new Error(`fleet did not get there: ${JSON.stringify(r)}; server: ${JSON.stringify(server?.ctx.feed.stats())}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

async function stormHarness(config: Partial<Config> = {}): Promise<Harness> {
  const h = await startHarness({ config: { ...STORM, ...config } });
  cleanup.push(() => h.close());
  return h;
}

describe("reconnect storms", () => {
  it("10,000 streams subscribe from 0 at once while revocations continue: all get everything, Revoke keeps working", async () => {
    const h = await stormHarness();
    await appendLogRows(h.databaseUrl, 200);
    const { tokenIds } = await workload(h.grpc, 1, 200);
    const c = await fleet();
    const revoker = steadyRevoker(h.grpc, tokenIds, 10);
    await open(c, { urls: [`http://${h.grpcAddress}`], n: 10_000, key: h.adminKey });
    await until(c, (r) => r.ready + r.closedEarly === 10_000, 300_000, h);
    const revoked = await revoker.stop();
    // Revoke was never starved: every revocation asked for went through.
    expect(revoked.failures).toEqual([]);
    expect(revoked.done).toBe(revoked.asked);
    expect(revoked.asked).toBeGreaterThan(0);
    const r = await until(c, (x) => x.minLast >= Number(revoked.lastRevision) || x.closedEarly > 0);
    expect({ closed: r.closedEarly, gaps: r.gaps, unactionable: r.refusedWithoutAdvice, error: r.firstError }).toEqual({ closed: 0, gaps: 0, unactionable: 0, error: "" });
    expect(r.minLast).toBe(Number(revoked.lastRevision));
    const s = h.ctx.feed.stats();
    console.log(`storm from 0: ${JSON.stringify(s)}; Revoke ${revoked.done}/${revoked.asked}`);
    // Grouped catch-up: reads grow with pages and rounds, not with streams (10,000 streams
    // replaying on their own would make at least 3 reads each).
    expect(s.catchUpReads).toBeLessThan(500);
    expect(s.refusals).toBe(0);
  }, 600_000);

  // Whoever arrives while the room is full is refused, with a retry-after these clients ignore.
  // Refused at once, they came back every 200-1000 ms, and with a room far below the burst the
  // refusals took the CPU the catch-up needed: the storm did not die out (room 10: 101,128
  // reconnects and 1,827 streams in after 22 s; room 20: 489,411 refusals, 2,932 in after 300 s).
  // A connection that returns before its retry-after now gets its answer only then, and the advice
  // grows with the refusals of the last seconds: the attempts shrink as the crowd does.
  it.each([1000, 10])("clients retrying aggressively (fixed 200-1000 ms) into a waiting room of %i: the storm dies out by itself", async (room) => {
    const h = await stormHarness({ feedMaxWaiting: room });
    await appendLogRows(h.databaseUrl, 200);
    const { tokenIds } = await workload(h.grpc, 1, 200);
    const c = await fleet();
    const revoker = steadyRevoker(h.grpc, tokenIds, 10);
    await open(c, { urls: [`http://${h.grpcAddress}`], n: 10_000, key: h.adminKey, retry: { mode: "fixed", minMs: 200, maxMs: 1000 } });
    // The bound: 10 attempts per stream on average (stopped early past it: a storm that does not
    // die out would run until the hang guard). Measured: docs/feed-and-sdk.md.
    const BOUND = 10 * 10_000;
    const r = await until(c, (x) => x.ready === 10_000 || x.reconnects > BOUND, 300_000, h);
    const revoked = await revoker.stop();
    console.log(`room of ${room}: ${r.reconnects} reconnects for 10,000 streams; feed ${JSON.stringify(h.ctx.feed.stats())}`);
    expect(r.reconnects).toBeLessThanOrEqual(BOUND);
    expect(r.ready).toBe(10_000);
    expect(revoked.failures).toEqual([]);
    expect(revoked.done).toBe(revoked.asked);
    const all = await until(c, (x) => x.minLast >= Number(revoked.lastRevision));
    expect({ gaps: all.gaps, unactionable: all.refusedWithoutAdvice }).toEqual({ gaps: 0, unactionable: 0 });
    // ...and it is over: with every stream in, nobody reconnects any more; every reconnect was a refusal.
    const later = await new Promise<Report>((res) => setTimeout(() => void c.send<Report>({ cmd: "report" }).then(res), 1500));
    expect(later.reconnects).toBe(all.reconnects);
    expect(h.ctx.feed.stats().refusals).toBe(all.reconnects);
  }, 600_000);

  it("10,000 watchers reconnect after a restart with a bounded number of database reads", async () => {
    const databaseUrl = await createTestDatabase();
    const grpcPort = await freePort();
    let h = await startHarness({ databaseUrl, config: { ...STORM, grpcPort } });
    cleanup.push(() => h.close());
    await appendLogRows(databaseUrl, 200);
    const { tokenIds } = await workload(h.grpc, 1, 50);
    const c = await fleet();
    await open(c, { urls: [`http://127.0.0.1:${grpcPort}`], n: 10_000, key: h.adminKey, retry: { mode: "backoff", initialMs: 100, maxMs: 2000 } });
    await until(c, (r) => r.ready === 10_000 && r.minLast === 200);
    // Restart: every stream ends, the clients retry until the server is back, then resume from
    // their last revision.
    await h.close();
    const key = h.adminKey;
    h = await startHarness({ databaseUrl, config: { ...STORM, grpcPort, adminKey: key } });
    cleanup.push(() => h.close());
    const admin = h.as(key).grpc;
    let last = 0n;
    for (const id of tokenIds.slice(0, 10)) last = (await admin.tokens.revoke({ target: { case: "tokenId", value: id }, reason: "after restart" })).revision;
    const r = await until(c, (x) => x.minLast >= Number(last));
    expect(r.gaps).toBe(0);
    expect(r.reconnects).toBeGreaterThanOrEqual(10_000);
    const s = h.ctx.feed.stats();
    expect(s.watchers).toBe(10_000);
    // Recent cursors join from the fan-out's memory after one bounds check per round: a handful of
    // reads for 10,000 streams.
    expect(s.catchUpReads).toBeLessThan(100);
  }, 600_000);

  it("5,000 streams move to a second replica when theirs is SIGKILLed, and miss nothing", async () => {
    const databaseUrl = await createTestDatabase();
    const env = { AGENTID_MAX_WATCHERS: "20000", AGENTID_MAX_WATCHERS_PER_CONNECTION: "1000", AGENTID_MAX_WATCHERS_PER_KEY: "20000" };
    const replicas: Replica[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await startReplica(databaseUrl, env);
      replicas.push(r);
      cleanup.push(() => r.kill("SIGKILL"));
    }
    const [victim, survivor] = replicas as [Replica, Replica];
    const admin = replicaClients(survivor.grpcUrl);
    await appendLogRows(databaseUrl, 200);
    const { tokenIds } = await workload(admin, 1, 200);
    const c = await fleet();
    await open(c, { urls: [victim.grpcUrl, survivor.grpcUrl], n: 5000, key: CLUSTER_ADMIN_KEY, retry: { mode: "backoff", initialMs: 100, maxMs: 2000 } });
    await until(c, (r) => r.ready === 5000);
    const revoker = steadyRevoker(admin, tokenIds, 10);
    await new Promise((r) => setTimeout(r, 1000));
    await victim.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 2000));
    const revoked = await revoker.stop();
    expect(revoked.failures).toEqual([]);
    const r = await until(c, (x) => x.minLast >= Number(revoked.lastRevision));
    expect(r.gaps).toBe(0);
    expect(r.reconnects).toBeGreaterThanOrEqual(5000);
    expect(r.refusedWithoutAdvice).toBe(0);
  }, 600_000);
});
