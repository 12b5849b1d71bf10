import pg from "pg";
import type { Logger } from "pino";
import type { Db } from "../store/database.js";
import {
  compactRevocations,
  headRevision,
  logBounds,
  readRevocationsAfter,
  REVOCATION_CHANNEL,
} from "../store/revocations.js";
import { DomainError } from "../domain/errors.js";
import { Watcher } from "./watcher.js";

export interface HubOptions {
  db: Db;
  /** A URL for the dedicated LISTEN connection. */
  databaseUrl: string;
  logger: Logger;
  /** Progress bookmarks and the safety-net poll run this often. */
  tickMs?: number;
  /** Per-watcher queue bound. */
  queueLimit?: number;
  /** Open watch streams on this replica, in total and per client connection. */
  maxWatchers?: number;
  maxWatchersPerConnection?: number;
  /** How often to drop expired token events from the log; 0 turns compaction off. */
  compactIntervalMs?: number;
  /** A token event is kept at least this long after its revocation, even once the token expired. */
  minRetentionMs?: number;
}

const PAGE = 1000;

/**
 * Tails the revocation log and fans it out to watchers. The log table is the truth; NOTIFY only
 * says "something new", and a tick re-reads the log every second anyway, so a lost notification
 * or a dropped LISTEN connection delays events but never loses them.
 */
export class RevocationHub {
  /** Every event up to head has been read from the log and handed to synced watchers. */
  head = 0n;
  private readonly watchers = new Set<Watcher>();
  private readonly perConnection = new Map<string, number>();
  private readonly db: Db;
  private readonly logger: Logger;
  private readonly tickMs: number;
  private readonly queueLimit: number;
  private readonly maxWatchers: number;
  private readonly maxPerConnection: number;
  private listener: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private compactTimer: NodeJS.Timeout | undefined;
  private pulling: Promise<boolean> | undefined;
  private pullAgain = false;
  private closed = false;
  private listenBackoffMs = 100;

  constructor(private readonly opts: HubOptions) {
    this.db = opts.db;
    this.logger = opts.logger;
    this.tickMs = opts.tickMs ?? 1000;
    this.queueLimit = opts.queueLimit ?? 10_000;
    this.maxWatchers = opts.maxWatchers ?? 10_000;
    this.maxPerConnection = opts.maxWatchersPerConnection ?? 100;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  async start(): Promise<void> {
    this.head = await headRevision(this.db);
    await this.listen();
    this.timer = setInterval(() => void this.tick(), this.tickMs);
    this.timer.unref();
    const every = this.opts.compactIntervalMs ?? 60_000;
    if (every > 0) {
      this.compactTimer = setInterval(() => void this.compact().catch(() => {}), every);
      this.compactTimer.unref();
    }
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.opts.databaseUrl });
    client.on("notification", () => void this.pull());
    client.on("error", (err) => {
      this.logger.warn({ err: err.message }, "feed: LISTEN connection lost; reconnecting");
      this.relisten(client);
    });
    client.on("end", () => this.relisten(client));
    try {
      await client.connect();
      await client.query(`listen ${REVOCATION_CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.listener = client;
    this.listenBackoffMs = 100;
    // Anything committed while we were not listening.
    void this.pull();
  }

  private relisten(client: pg.Client): void {
    if (this.closed || this.listener !== client) return;
    this.listener = undefined;
    client.end().catch(() => {});
    const retry = (): void => {
      if (this.closed) return;
      this.listen().catch((err: Error) => {
        this.logger.warn({ err: err.message, retryMs: this.listenBackoffMs }, "feed: LISTEN reconnect failed");
        this.listenBackoffMs = Math.min(this.listenBackoffMs * 2, 5000);
        setTimeout(retry, this.listenBackoffMs).unref();
      });
    };
    setTimeout(retry, this.listenBackoffMs).unref();
  }

  private async tick(): Promise<void> {
    // A bookmark is a promise that the log was read just now: when the database cannot be read,
    // watchers hear nothing, and a strict client fails closed instead of trusting a stale head.
    if (!(await this.pull())) return;
    const head = this.head;
    for (const w of this.watchers) if (w.synced) w.pushProgress(head);
  }

  /**
   * Reads everything after head; concurrent calls coalesce into one more read. Resolves true when
   * a read that started after this call succeeded.
   */
  pull(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.pulling) {
      this.pullAgain = true;
      // The read in flight may have started before this call; the follow-up read answers it.
      return this.pulling.then(() => this.pulling ?? this.pull());
    }
    const p = this.readNew().then(
      () => true,
      (err: Error) => {
        this.logger.warn({ err: err.message }, "feed: reading the log failed; retrying on next tick");
        return false;
      },
    );
    this.pulling = p;
    void p.finally(() => {
      this.pulling = undefined;
      if (this.pullAgain) {
        this.pullAgain = false;
        void this.pull();
      }
    });
    return p;
  }

  private async readNew(): Promise<void> {
    for (;;) {
      const { events, compactedThrough } = await readRevocationsAfter(this.db, this.head, PAGE);
      if (compactedThrough > this.head) {
        // Compaction removed events this replica had not read yet (only with a retention near 0).
        // Watchers cannot be told which ones; they resume, get OUT_OF_RANGE and replay from 0.
        for (const w of this.watchers) if (w.synced && w.cursor < compactedThrough) w.fail(compactedError(w.cursor));
        this.head = compactedThrough;
      }
      for (const event of events) {
        // One message object per event, shared by every watcher.
        const message = { kind: "revocation" as const, event };
        this.head = event.revision;
        // In one synchronous pass: slicing it to let other requests in between was measured
        // (bench/feed-scale.ts) to triple the fan-out time for a modest gain in their p99.
        for (const w of this.watchers) if (w.synced) w.pushEvent(message);
      }
      if (events.length < PAGE) return;
    }
  }

  /**
   * A watcher that first replays the log after `after` from the database, then joins the live
   * fan-out. The switch happens in one synchronous step, so nothing falls between the two.
   * `connection` identifies the client's connection, for the per-connection limit.
   */
  subscribe(after: bigint, connection = ""): Watcher {
    if (this.watchers.size >= this.maxWatchers) {
      throw new DomainError(
        "resource_exhausted",
        `this server already has ${this.maxWatchers} watch streams open (AGENTID_MAX_WATCHERS); retry later or use another replica`,
      );
    }
    const open = this.perConnection.get(connection) ?? 0;
    if (open >= this.maxPerConnection) {
      throw new DomainError(
        "resource_exhausted",
        `this connection already has ${this.maxPerConnection} watch streams open (AGENTID_MAX_WATCHERS_PER_CONNECTION); share one stream per process`,
      );
    }
    this.perConnection.set(connection, open + 1);
    const w = new Watcher(after, this.queueLimit, (x) => {
      if (!this.watchers.delete(x)) return;
      const n = (this.perConnection.get(connection) ?? 1) - 1;
      if (n > 0) this.perConnection.set(connection, n);
      else this.perConnection.delete(connection);
    });
    this.watchers.add(w);
    if (this.closed) {
      w.end();
      return w;
    }
    this.replay(w).catch((err: Error) =>
      w.fail(err instanceof DomainError ? err : new DomainError("unavailable", "reading the revocation log failed; retry")),
    );
    return w;
  }

  private async replay(w: Watcher): Promise<void> {
    const fromZero = w.cursor === 0n;
    const bounds = await logBounds(this.db);
    if (w.cursor > bounds.head) {
      throw new DomainError(
        "out_of_range",
        `after_revision ${w.cursor} is ahead of the log (head ${bounds.head}); replay from 0`,
      );
    }
    const page = Math.max(1, Math.min(PAGE, Math.floor(this.queueLimit / 2)));
    for (;;) {
      await w.drained(page);
      if (w.closed) return;
      const before = w.cursor;
      const { events, compactedThrough, head } = await readRevocationsAfter(this.db, before, page);
      // From 0 the client asked for what is retained; from a cursor it asked for everything after it.
      if (!fromZero && compactedThrough > before) throw compactedError(before);
      for (const event of events) w.pushEvent({ kind: "revocation", event });
      if (w.closed) return;
      // A short page holds every event up to the snapshot's head. Without this, a log whose newest
      // events were compacted away would never let the cursor reach the hub's head.
      if (events.length < page) w.skipTo(head);
      if (events.length < page && w.cursor >= this.head) break;
    }
    w.synced = true;
    w.pushProgress(this.head);
  }

  /** Drops expired token events from the log; every replica may run it, they do not conflict. */
  async compact(): Promise<number> {
    try {
      const removed = await compactRevocations(this.db, this.opts.minRetentionMs ?? 3_600_000);
      if (removed > 0) this.logger.info({ removed }, "feed: compacted expired token revocations");
      return removed;
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "feed: compaction failed; retrying later");
      throw err;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.compactTimer);
    for (const w of this.watchers) w.end();
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => {});
    await this.pulling;
  }
}

function compactedError(cursor: bigint): DomainError {
  return new DomainError(
    "out_of_range",
    `after_revision ${cursor} is older than the retained log (expired token revocations were compacted); replay from 0`,
  );
}
