// The feed's components, each on its own: watcher queues and the fan-out (pure logic), the log
// tailer and the catch-up group (against a real PostgreSQL).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import pino from "pino";
import { Watcher } from "../src/feed/watcher.js";
import { FanOut } from "../src/feed/fanout.js";
import { CatchUp } from "../src/feed/catch-up.js";
import { LogTailer } from "../src/feed/tailer.js";
import { FeedRefusal } from "../src/feed/refusal.js";
import { makeView, type View } from "../src/feed/view.js";
import type { Frame, FrameEncoder } from "../src/feed/frame.js";
import { feedFrames } from "../src/server/messages.js";
import { fromBinary } from "@bufbuild/protobuf";
import { WatchRevocationsResponseSchema } from "../gen/agentid/v1/revocation_pb.js";
import { openDatabase } from "../src/store/open.js";
import { openFeedPool } from "../src/store/feed-pool.js";
import { readRevocationsAfter, type LogEvent } from "../src/store/revocation-reads.js";
import { revocationLog } from "../src/store/revocations.js";
import { Sequencer } from "../src/store/sequencer.js";
import type { Db } from "../src/store/database.js";
import { until } from "./support/until.js";
import { createTestDatabase } from "./support/harness.js";
import { appendLogRows } from "../bench/lib/sequenced-db.js";

const logger = pino({ level: "silent" });
const ADMIN = makeView({ keyId: "key_admin", role: "admin", audiences: [] });
const ORDERS = makeView({ keyId: "key_rs1", role: "resource_server", audiences: ["orders"] });
const BILLING = makeView({ keyId: "key_rs2", role: "resource_server", audiences: ["billing"] });

/** The server's encoder, counting what it builds. */
function countingEncoder() {
  const counts = { events: 0, progress: 0 };
  const encoder: FrameEncoder = {
    events: (e) => (counts.events++, feedFrames.events(e)),
    progress: (r) => (counts.progress++, feedFrames.progress(r)),
  };
  return { encoder, counts };
}

function ev(revision: number, audiences: string[], tokenId: string | null = `tok_${revision}`): LogEvent {
  return { revision: BigInt(revision), tokenId, agentId: "agt_a", reason: "why", revokedBy: "key:k", revokedAt: new Date(), expiresAt: null, audiences };
}

function watcher(view: View, after = 0n, limit = 100, deadline = Date.now() + 60_000): Watcher {
  return new Watcher(after, view, limit, "key_x", "conn", deadline);
}

/** Everything queued right now. */
async function drain(w: Watcher): Promise<Frame[]> {
  const out: Frame[] = [];
  while (w.queued > 0) out.push((await w.next())!);
  return out;
}
const revisions = (frames: Frame[]) => frames.flatMap((f) => f.message.events.map((e) => Number(e.revision)));

describe("fan-out", () => {
  it("encodes each batch once per view and queues the same frame on every stream of that view", async () => {
    const { encoder, counts } = countingEncoder();
    const fan = new FanOut(0n, encoder);
    const [a1, a2, o1, o2, b1] = [watcher(ADMIN), watcher(ADMIN), watcher(ORDERS), watcher(ORDERS), watcher(BILLING)];
    for (const w of [a1, a2, o1, o2, b1]) fan.join(w);
    for (const w of [a1, a2, o1, o2, b1]) await drain(w); // the joining bookmarks
    fan.publish([ev(1, ["orders"]), ev(2, ["billing"]), ev(3, ["orders", "billing"])], 3n);
    expect(counts.events).toBe(3);
    const [fa1, fa2, fo1, fo2, fb1] = await Promise.all([a1, a2, o1, o2, b1].map(drain));
    expect(fa1![0]).toBe(fa2![0]);
    expect(fo1![0]).toBe(fo2![0]);
    expect(revisions(fa1!)).toEqual([1, 2, 3]);
    expect(revisions(fo1!)).toEqual([1, 3]);
    expect(revisions(fb1!)).toEqual([2, 3]);
    // Every view gets what it sees whole.
    expect(fo1![0]!.message.events[0]!.reason).toBe("why");
    expect(fa1![0]!.message.events[0]!.reason).toBe("why");

    // A batch a view may not see sends it nothing, but its cursor (and so its bookmarks) moves on.
    fan.publish([ev(4, ["billing"])], 4n);
    expect(o1.queued).toBe(0);
    expect(o1.cursor).toBe(4n);
    fan.progress();
    const [p1] = await drain(o1);
    const [p2] = await drain(a1).then((f) => f.slice(-1));
    expect(p1).toBe(p2);
    expect(p1!.message.progress?.revision).toBe(4n);
    expect(counts.progress).toBe(2); // one at the joins (head 0), one now: shared by every stream
  });

  it("joins recent cursors from memory, one encoding per view and cursor, and refuses nothing it cannot cover", async () => {
    const { encoder, counts } = countingEncoder();
    const fan = new FanOut(0n, encoder, 5);
    for (let r = 1; r <= 8; r++) fan.publish([ev(r, ["orders"])], BigInt(r));
    expect(fan.floor).toBe(3n);
    const before = counts.events;
    const [x, y] = [watcher(ORDERS, 4n), watcher(ORDERS, 4n)];
    fan.join(x);
    fan.join(y);
    expect(counts.events - before).toBe(1);
    const fx = await drain(x);
    const fy = await drain(y);
    expect(fx[0]).toBe(fy[0]);
    expect(revisions(fx)).toEqual([5, 6, 7, 8]);
    expect(fx.at(-1)!.message.progress?.revision).toBe(8n);
    // Below what memory covers: the catch-up group must read the log first.
    expect(() => fan.join(watcher(ORDERS, 2n))).toThrow(/history covers/);
  });

  it("fails synced watchers when the log lost events it had not read (compaction), so they resume", async () => {
    const fan = new FanOut(0n, feedFrames);
    const w = watcher(ADMIN);
    fan.join(w);
    fan.skipTo(10n, (c) => new FeedRefusal("out_of_range", `cursor ${c} compacted`, 0));
    await drain(w).catch(() => {});
    await expect(w.next()).rejects.toThrow(/cursor 0 compacted/);
    expect(fan.size).toBe(0);
  });
});

describe("watcher queue", () => {
  it("hands a stream that fell behind its batches over as one message, joined once for all the view's streams", async () => {
    const fan = new FanOut(0n, feedFrames);
    const [a, b] = [watcher(ADMIN), watcher(ADMIN)];
    for (const w of [a, b]) {
      fan.join(w);
      await drain(w); // the joining bookmark
    }
    for (let r = 1; r <= 5; r++) fan.publish([ev(r, [])], BigInt(r));
    fan.progress();
    fan.publish([ev(6, [])], 6n);
    expect(a.queued).toBe(7);
    const [fa, fb] = [await drain(a), await drain(b)];
    // Events 1-5 in one message, the bookmark, then event 6: a bookmark is never moved past events.
    expect(fa.map((f) => [f.kind, f.after, f.through])).toEqual([["events", 0n, 5n], ["progress", 5n, 5n], ["events", 5n, 6n]]);
    expect(revisions(fa)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(fb[0]).toBe(fa[0]);
    // The bytes are the protobuf concatenation, which decodes to the joined message.
    expect(fromBinary(WatchRevocationsResponseSchema, fa[0]!.bytes).events.map((e) => Number(e.revision))).toEqual([1, 2, 3, 4, 5]);
  });

  it("cuts a slow watcher with RESOURCE_EXHAUSTED and the revision to resume from", async () => {
    const fan = new FanOut(0n, feedFrames);
    const w = watcher(ADMIN, 0n, 3);
    fan.join(w); // queue: bookmark
    await w.next(); // the client took the bookmark, then stalls
    for (let r = 1; r <= 4; r++) fan.publish([ev(r, [])], BigInt(r));
    await expect(w.next()).rejects.toMatchObject({ kind: "resource_exhausted", message: expect.stringMatching(/resume with after_revision=0$/) });
  });

  it("never queues a revision twice and replaces a queued bookmark instead of stacking it", async () => {
    const fan = new FanOut(0n, feedFrames);
    const w = watcher(ADMIN);
    fan.join(w);
    fan.progress();
    expect(w.queued).toBe(1);
    fan.publish([ev(1, [])], 1n);
    const dup = fan.eventFrame([ev(1, [])], ADMIN, 0n, 1n);
    w.pushEvents(dup);
    fan.progress();
    fan.progress();
    const frames = await drain(w);
    expect(frames.map((f) => f.kind)).toEqual(["progress", "events", "progress"]);
    expect(revisions(frames)).toEqual([1]);
  });
});

describe("log tailer and catch-up (real PostgreSQL)", () => {
  let url: string;
  let db: Db;
  let feedDb: ReturnType<typeof openFeedPool>;
  let admin: pg.Client;
  // The replica's spine: the tailer follows its heads and the rows its passes number.
  let sequencer: Sequencer;
  beforeAll(async () => {
    url = await createTestDatabase();
    db = (await openDatabase(url, 2)).db;
    sequencer = new Sequencer({ db, databaseUrl: url, logger, logs: [revocationLog], tickMs: 600_000 });
    await sequencer.start();
    feedDb = openFeedPool(url, 3);
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await feedDb?.close();
    await sequencer?.close();
    await db?.destroy();
  });

  function tailer(head: bigint, tickMs: number, got: number[], events: LogEvent[] = []) {
    return new LogTailer(head, {
      readLog: (after, limit) => readRevocationsAfter(feedDb.db, after, limit),
      spine: sequencer,
      log: revocationLog.name,
      logger,
      tickMs,
      pageSize: 1000,
      onEvents: (es) => {
        got.push(...es.map((e) => Number(e.revision)));
        events.push(...es);
      },
      onGap: () => {
        throw new Error("no gap expected");
      },
      onTick: () => {},
    });
  }

  it("coalesces concurrent pulls into few page reads and hands on every event once, in order", async () => {
    const head = Number(await appendLogRows(url, 2500));
    const got: number[] = [];
    const t = tailer(0n, 60_000, got);
    await Promise.all(Array.from({ length: 20 }, () => t.pull()));
    expect(got).toEqual(Array.from({ length: head }, (_, i) => i + 1));
    // 3 pages, plus at most one coalesced follow-up read (3 more pages).
    expect(t.reads).toBeLessThanOrEqual(6);
    await t.close();
  });

  it("hands on the rows its replica's sequencer numbers without reading them, exactly as a read has them", async () => {
    await admin.query(`
      insert into agents (id, name, public_key, status) values ('agt_spine', 'spine', '\\x00', 'ACTIVE');
      insert into tokens (id, token_hash, agent_id, scopes, audiences, expires_at) values
        ('tok_spine1', sha256('s1'), 'agt_spine', '{read}', '{orders,billing}', now() + interval '1 hour'),
        ('tok_spine2', sha256('s2'), 'agt_spine', '{read}', '{shipping}', now() + interval '1 hour')`);
    const start = await sequencer.flush("revocations");
    const got: number[] = [];
    const handed: LogEvent[] = [];
    const t = tailer(start, 600_000, got, handed);
    await t.start();
    await t.pull();
    const reads = t.reads;
    await admin.query(`
      insert into revocation_inbox (token_id, agent_id, reason, revoked_by, expires_at)
        values ('tok_spine1', 'agt_spine', 'one token', 'test', now() + interval '1 hour');
      insert into revocation_inbox (token_id, agent_id, reason, revoked_by) values (null, 'agt_spine', 'the agent', 'test')`);
    sequencer.wake("revocations");
    const ours = () => handed.filter((e) => e.agentId === "agt_spine");
    await until(async () => ours().length, (n) => n === 2);
    expect({ handedOn: t.handedOn, reads: t.reads - reads }, `from ${start}: ${handed.map((e) => e.revision).join(",")}`).toEqual({ handedOn: 2, reads: 0 });
    expect(ours().map((e) => [e.reason, [...e.audiences].sort()])).toEqual([
      ["one token", ["billing", "orders"]],
      ["the agent", ["billing", "orders", "shipping"]],
    ]);
    // What another replica reads, field for field (audiences are a set).
    const page = await readRevocationsAfter(feedDb.db, ours()[0]!.revision - 1n, 1000);
    const norm = (es: LogEvent[]) => es.map((e) => ({ ...e, audiences: [...e.audiences].sort() }));
    expect(norm(ours())).toEqual(norm(page.events));
    await t.close();
  });

  it("is woken by NOTIFY through the sequencer, and after the sequencer's LISTEN connection is killed, listens again", async () => {
    const start = (await admin.query("select coalesce(max(revision), 0) as h from revocations")).rows[0].h;
    const got: number[] = [];
    // No safety tick within the test: only a notification can deliver.
    const t = tailer(BigInt(start), 600_000, got);
    await t.start();
    const head = Number(await appendLogRows(url, 5));
    while (got.at(-1) !== head) await new Promise((r) => setTimeout(r, 10));
    await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and query ilike 'listen %'`);
    for (;;) {
      const { rows } = await admin.query("select count(*)::int as n from pg_stat_activity where datname = current_database() and query ilike 'listen %'");
      if (rows[0].n >= 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const head2 = Number(await appendLogRows(url, 5));
    while (got.at(-1) !== head2) await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual(Array.from({ length: head2 - Number(start) }, (_, i) => Number(start) + i + 1));
    await t.close();
  });

  it("reads on its safety tick what no notification announced", async () => {
    const start = Number((await admin.query("select coalesce(max(revision), 0) as h from revocations")).rows[0].h);
    const got: number[] = [];
    const t = tailer(BigInt(start), 50, got);
    await t.start();
    // A numbered row written without NOTIFY (as if the notification were lost).
    await admin.query(
      `with r as (insert into revocations (revision, token_id, agent_id, reason, revoked_by) values ($1, 'tok_silent', 'agt_s', 'r', 'test'))
       update log_head set revision = $1`,
      [start + 1],
    );
    while (got.at(-1) !== start + 1) await new Promise((r) => setTimeout(r, 10));
    await t.close();
  });

  it("catches up a crowd together: reads grow with pages, not watchers, and each gets exactly its events", async () => {
    const head = Number((await admin.query("select max(revision) as h from revocations")).rows[0].h);
    const { encoder, counts } = countingEncoder();
    const fan = new FanOut(BigInt(head), encoder);
    const catchUp = new CatchUp({ db: feedDb.db, readLog: (after, limit) => readRevocationsAfter(feedDb.db, after, limit), fanOut: fan, logger, pageSize: 500, pull: () => {}, retryAfterMs: () => 1000 });
    const fromZero = Array.from({ length: 1000 }, () => watcher(ADMIN, 0n, 1000));
    const resuming = Array.from({ length: 100 }, () => watcher(ADMIN, 1200n, 1000));
    const all = [...fromZero, ...resuming];
    const received = new Map<Watcher, number[]>(all.map((w) => [w, []]));
    const done = Promise.all(
      all.map(async (w) => {
        for (;;) {
          const f = (await w.next())!;
          received.get(w)!.push(...f.message.events.map((e) => Number(e.revision)));
          if (f.kind === "progress") return;
        }
      }),
    );
    for (const w of all) catchUp.add(w);
    await done;
    for (const w of fromZero) expect(received.get(w)).toEqual(Array.from({ length: head }, (_, i) => i + 1));
    for (const w of resuming) expect(received.get(w)).toEqual(Array.from({ length: head - 1200 }, (_, i) => 1201 + i));
    expect(fan.size).toBe(1100);
    // ceil(head / 500) pages and a bounds check, whatever the number of watchers.
    expect(catchUp.reads).toBeLessThanOrEqual(Math.ceil(head / 500) + 3);
    // Frames are built per page and distinct cursor, not per watcher.
    expect(counts.events).toBeLessThanOrEqual(2 * (Math.ceil(head / 500) + 2));
    await catchUp.close();
  });

  it("refuses, with a retry-after, a subscriber still waiting at its deadline, and a cursor ahead of the log", async () => {
    const fan = new FanOut(0n, feedFrames);
    const catchUp = new CatchUp({ db: feedDb.db, readLog: (after, limit) => readRevocationsAfter(feedDb.db, after, limit), fanOut: fan, logger, pageSize: 500, pull: () => {}, retryAfterMs: () => 1234 });
    const late = watcher(ADMIN, 0n, 100, Date.now() - 1);
    const ahead = watcher(ADMIN, 1_000_000n);
    catchUp.add(late);
    catchUp.add(ahead);
    await expect(late.next()).rejects.toMatchObject({ kind: "unavailable", retryAfterMs: 1234 });
    await expect(ahead.next()).rejects.toMatchObject({ kind: "out_of_range", message: expect.stringMatching(/ahead of the log/) });
    expect(catchUp.refused).toBe(1);
    await catchUp.close();
  });
});
