import type { Logger } from "pino";
import { openFeedPool } from "../store/feed-pool.js";
import { performance } from "node:perf_hooks";
import { compactRevocations, liveKeyIds, logBounds, readRevocationsAfter, type LogPage } from "../store/revocation-reads.js";
import { revocationLog } from "../store/revocations.js";
import { DomainError } from "../domain/errors.js";
import { CatchUp, compactedError } from "./catch-up.js";
import { FanOut } from "./fanout.js";
import { MAX_FRAME_EVENTS, type FrameEncoder } from "./frame.js";
import { FeedRefusal } from "./refusal.js";
import { StreamLimits } from "./limits.js";
import { LogTailer, type LogSpine } from "./tailer.js";
import { Dispatcher } from "./dispatcher.js";
import { makeView, viewKey, type Subscriber, type View } from "./view.js";
import { Watcher } from "./watcher.js";

export interface FeedOptions {
  /** For the feed's own small pool. */
  databaseUrl: string;
  /** The replica's sequencer: the feed follows the revocation log's heads and numbered rows. */
  spine: LogSpine;
  logger: Logger;
  encoder: FrameEncoder;
  /** Progress bookmarks and the safety-net read run this often. */
  tickMs?: number;
  /** Per-watcher queue bound, in messages. */
  queueLimit?: number;
  /** Open watch streams on this replica: in total, per client connection, per API key. */
  maxWatchers?: number;
  maxWatchersPerConnection?: number;
  maxWatchersPerKey?: number;
  /** Subscribers waiting to catch up at once; beyond it they are refused with a retry-after. */
  maxWaiting?: number;
  /** A subscriber not caught up within this is refused (UNAVAILABLE) with a retry-after. */
  catchUpDeadlineMs?: number;
  /** Connections in the feed's own pool. */
  poolSize?: number;
  /** How often the API keys of open streams are re-checked (revoked on another replica). */
  keyCheckMs?: number;
  /** Newest events kept in memory so that recent cursors join without a database read. */
  historyLimit?: number;
  /** How often to drop expired token events from the log; 0 turns compaction off. */
  compactIntervalMs?: number;
  /** A token event is kept at least this long after its revocation, even once the token expired. */
  minRetentionMs?: number;
  /** How often the counters are logged while streams are open. */
  statsLogMs?: number;
}

/** Who read a page of the log: the tailer (new events) or the catch-up group (older ones). */
export type LogReader = "tailer" | "catch_up";

/** The feed's counters, for logs and metrics. */
export interface FeedStats {
  /** Open streams, synced or not. */
  watchers: number;
  /** Streams in the live fan-out. */
  synced: number;
  /** Streams waiting in the catch-up group. */
  waitingSubscribers: number;
  /** Distinct views (audience sets) in the fan-out: frames are encoded once per view and batch. */
  views: number;
  /** Database reads by the catch-up group, since start. */
  catchUpReads: number;
  /** Database reads by the tailer, since start. */
  tailerReads: number;
  /** Subscriptions refused (limits, catch-up capacity or deadline), since start. */
  refusals: number;
  /** The longest queue of any open stream, in messages. */
  queueDepthMax: number;
  /** How long the last batch took to fan out, in ms. */
  lastFanoutMs: number;
  /** The last revision handed to the fan-out (a number, so the object stays plain JSON). */
  head: number;
}

/**
 * The revocation feed: a pipeline of
 * - the log tailer (LISTEN, safety tick, coalesced pulls: reads what is new, once per replica),
 * - the fan-out (synced watchers by view, bounded queues of shared frames),
 * - the catch-up group (new and resuming watchers, served together from their lowest cursor),
 * plus the limits that keep it from taking what the write path needs (own pool, one catch-up
 * reader, bounded waiting, and the stream limits of limits.ts).
 */
export class RevocationFeed {
  private readonly all = new Set<Watcher>();
  /** One View object per distinct audience set, with how many streams use it. */
  private readonly views = new Map<string, { view: View; streams: number }>();
  private readonly pool: ReturnType<typeof openFeedPool>;
  private readonly fanOut: FanOut;
  private readonly tailer: LogTailer;
  private readonly catchUp: CatchUp;
  private readonly dispatcher: Dispatcher;
  private readonly o: Required<Omit<FeedOptions, "databaseUrl" | "spine" | "logger" | "encoder">> & FeedOptions;
  private timers: NodeJS.Timeout[] = [];
  private readonly limits: StreamLimits;
  private closed = false;
  private started = false;
  private readonly logReadListeners = new Set<(reader: LogReader, seconds: number) => void>();

  constructor(opts: FeedOptions) {
    this.o = {
      tickMs: 1000,
      queueLimit: 10_000,
      maxWatchers: 10_000,
      maxWatchersPerConnection: 100,
      maxWatchersPerKey: 1000,
      maxWaiting: 20_000,
      catchUpDeadlineMs: 30_000,
      poolSize: 3,
      keyCheckMs: 5000,
      historyLimit: 10_000,
      compactIntervalMs: 60_000,
      minRetentionMs: 3_600_000,
      statsLogMs: 10_000,
      ...opts,
    };
    this.dispatcher = new Dispatcher(() => this.catchUp.size > 0);
    this.limits = new StreamLimits(this.o, () => this.all.size, () => this.catchUp.size);
    this.pool = openFeedPool(opts.databaseUrl, this.o.poolSize);
    this.fanOut = new FanOut(0n, opts.encoder, this.o.historyLimit);
    this.tailer = new LogTailer(0n, {
      readLog: this.timedRead("tailer"),
      spine: opts.spine,
      log: revocationLog.name,
      logger: opts.logger,
      tickMs: this.o.tickMs,
      pageSize: MAX_FRAME_EVENTS,
      onEvents: (events, through) => {
        this.fanOut.publish(events, through);
        if (this.catchUp.size > 0) this.catchUp.kick();
      },
      onGap: (through) => this.fanOut.skipTo(through, compactedError),
      onTick: () => this.fanOut.progress(),
    });
    this.catchUp = new CatchUp({
      db: this.pool.db,
      readLog: this.timedRead("catch_up"),
      fanOut: this.fanOut,
      logger: opts.logger,
      pageSize: MAX_FRAME_EVENTS,
      pull: () => void this.tailer.pull(),
      retryAfterMs: () => this.limits.retryAfterMs(),
      roomFull: () => this.catchUp.size >= this.o.maxWaiting,
    });
  }

  /** Reads of the log, timed for onLogRead. */
  private timedRead(reader: LogReader): (after: bigint, limit: number) => Promise<LogPage> {
    return async (after, limit) => {
      const t0 = performance.now();
      try {
        return await readRevocationsAfter(this.pool.db, after, limit);
      } finally {
        const seconds = (performance.now() - t0) / 1000;
        for (const f of this.logReadListeners) f(reader, seconds);
      }
    };
  }

  /** Calls `f` after every page read of the log (succeeded or not), with its duration. */
  onLogRead(f: (reader: LogReader, seconds: number) => void): void {
    this.logReadListeners.add(f);
  }

  get watcherCount(): number {
    return this.all.size;
  }

  async start(): Promise<void> {
    const { head } = await logBounds(this.pool.db);
    // The fan-out starts at the head with empty memory: older cursors are caught up from the log.
    this.fanOut.skipTo(head, compactedError);
    this.tailer.head = head;
    await this.tailer.start();
    this.started = true;
    this.every(this.o.keyCheckMs, () => this.checkKeys());
    this.every(this.o.keyCheckMs, () => this.limits.forgetPastWaits());
    this.every(this.o.statsLogMs, () => this.logStats());
    if (this.o.compactIntervalMs > 0) this.every(this.o.compactIntervalMs, () => this.compact().catch(() => 0));
  }

  private every(ms: number, f: () => unknown): void {
    const t = setInterval(() => void f(), ms);
    t.unref();
    this.timers.push(t);
  }

  /**
   * A stream for `subscriber` after revision `after`. It waits in the catch-up group, then joins
   * the live fan-out. Refusals are RESOURCE_EXHAUSTED with a retry-after the client can honour.
   */
  subscribe(after: bigint, subscriber: Subscriber, connection = ""): Watcher {
    if (this.closed || !this.started) {
      this.limits.refusals++;
      throw new FeedRefusal("unavailable", "this server is not serving the feed (starting or stopping); use another replica", 1000);
    }
    this.limits.admit(subscriber.keyId, connection);
    const key = viewKey(subscriber);
    let v = this.views.get(key);
    if (!v) this.views.set(key, (v = { view: makeView(subscriber), streams: 0 }));
    v.streams++;
    const w = new Watcher(after, v.view, this.o.queueLimit, subscriber.keyId, connection, Date.now() + this.o.catchUpDeadlineMs, this.dispatcher);
    this.all.add(w);
    w.onClose((x) => {
      if (!this.all.delete(x)) return;
      this.limits.release(x.keyId, x.connection);
      this.fanOut.remove(x);
      const vx = this.views.get(x.view.key);
      if (vx && --vx.streams === 0) this.views.delete(x.view.key);
    });
    this.catchUp.add(w);
    return w;
  }

  /**
   * Resolves in the dispatcher's next slice with room, after the writes queued before it: a
   * subscription admitted now is set up in its turn, so a burst of them is spread over
   * event-loop turns instead of being taken in one.
   */
  turn(): Promise<void> {
    return new Promise((resolve) => this.dispatcher.schedule({ flush: () => (resolve(), SUBSCRIPTION_COST) }));
  }

  /** Ends every stream opened with this API key: it was just revoked on this replica. */
  endStreamsOf(keyId: string): number {
    let n = 0;
    for (const w of [...this.all]) {
      if (w.keyId !== keyId) continue;
      w.fail(revokedKey());
      n++;
    }
    return n;
  }

  /** Ends streams whose key was revoked elsewhere: one query for every open stream's key. */
  async checkKeys(): Promise<void> {
    const ids = [...new Set([...this.all].map((w) => w.keyId))];
    if (ids.length === 0) return;
    let live: Set<string>;
    try {
      live = await liveKeyIds(this.pool.db, ids);
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, "feed: checking stream keys failed; retrying later");
      return;
    }
    for (const id of ids) if (!live.has(id)) this.endStreamsOf(id);
  }

  /** Drops expired token events from the log; every replica may run it, they do not conflict. */
  async compact(): Promise<number> {
    try {
      const removed = await compactRevocations(this.pool.db, this.o.minRetentionMs);
      if (removed > 0) this.o.logger.info({ removed }, "feed: compacted expired token revocations");
      return removed;
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, "feed: compaction failed; retrying later");
      throw err;
    }
  }

  stats(): FeedStats {
    let queueDepthMax = 0;
    for (const w of this.all) if (w.queued > queueDepthMax) queueDepthMax = w.queued;
    return {
      watchers: this.all.size,
      synced: this.fanOut.size,
      waitingSubscribers: this.catchUp.size,
      views: this.fanOut.views,
      catchUpReads: this.catchUp.reads,
      tailerReads: this.tailer.reads,
      refusals: this.limits.refusals + this.catchUp.refused,
      queueDepthMax,
      lastFanoutMs: this.fanOut.lastFanoutMs,
      head: Number(this.fanOut.head),
    };
  }

  private lastLogged = "";
  private logStats(): void {
    const s = this.stats();
    const line = JSON.stringify({ ...s, lastFanoutMs: Math.round(s.lastFanoutMs) });
    if (line === this.lastLogged) return;
    this.lastLogged = line;
    if (s.watchers > 0 || s.refusals > 0) this.o.logger.info(JSON.parse(line) as object, "feed: stats");
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const w of [...this.all]) w.end();
    await this.catchUp.close();
    await this.tailer.close();
    await this.pool.close();
  }
}

/** What setting up a stream costs in the dispatcher's byte budget: a little more than a live batch. */
const SUBSCRIPTION_COST = 1024;

function revokedKey(): DomainError {
  return new DomainError("unauthenticated", "the API key this stream was opened with has been revoked");
}
