import type { Logger } from "pino";
import type { Db } from "../store/database.js";
import { logBounds, type LogEvent, type LogPage } from "../store/revocation-reads.js";
import { DomainError } from "../domain/errors.js";
import type { FanOut } from "./fanout.js";
import type { Frame } from "./frame.js";
import { FeedRefusal } from "./refusal.js";
import type { Watcher } from "./watcher.js";

export interface CatchUpOptions {
  /** The feed's own pool (see RevocationFeed): catch-up never takes the write path's connections. */
  db: Db;
  /** A page of the log after a revision, on that pool. */
  readLog(after: bigint, limit: number): Promise<LogPage>;
  fanOut: FanOut;
  logger: Logger;
  pageSize: number;
  /** Asks the tailer to read now (a watcher's cursor is ahead of what this replica has read). */
  pull(): void;
  /** How long a refused subscriber should wait before it tries again. */
  retryAfterMs(): number;
  /** The waiting room is full: nobody else can arrive, so waiting to check more at once is pointless. */
  roomFull?(): boolean;
}

/** New subscribers' bounds are read at most this often while they keep arriving. */
const BOUNDS_EVERY_MS = 100;

export function compactedError(cursor: bigint): DomainError {
  return new DomainError(
    "out_of_range",
    `after_revision ${cursor} is older than the retained log (expired token revocations were compacted); replay from 0`,
  );
}

/**
 * The unsynced group (etcd's watchable_store): new and resuming watchers wait here and are served
 * together by ONE loop, reading pages from their lowest cursor; every watcher at or below a page
 * takes its part of it, encoded once per view and cursor. A watcher whose cursor reaches the
 * fan-out's head (or its in-memory history) joins the fan-out in one synchronous step. Database
 * reads grow with the distinct pages needed, not with the number of watchers, and at most one
 * catch-up read is in flight at a time: that is the catch-up's admission control.
 */
export class CatchUp {
  /** Database reads made (pages and bounds). */
  reads = 0;
  /** Subscribers refused because they waited past their deadline. */
  refused = 0;
  private readonly group = new Set<Watcher>();
  private lastBoundsRead = -Infinity;
  /** The compaction floor as of the last read. */
  private compactedThrough = 0n;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private closed = false;

  constructor(private readonly o: CatchUpOptions) {}

  get size(): number {
    return this.group.size;
  }

  add(w: Watcher): void {
    this.group.add(w);
    w.onClose((x) => this.group.delete(x));
    // A running loop takes it at its next round; waking it for each arrival would make a round
    // (a pass over the group) per subscriber during a storm.
    if (!this.running) this.kick();
  }

  /** Something changed (a new watcher, the fan-out moved, a queue drained): run a round. */
  kick(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
    if (!this.running && !this.closed) {
      // From the next turn: subscribers arriving together start in one round.
      this.running = new Promise<void>((r) => setImmediate(r)).then(() => this.loop()).finally(() => {
        this.running = undefined;
        if (this.group.size > 0 && !this.closed) this.kick();
      });
    }
  }

  private async loop(): Promise<void> {
    while (this.group.size > 0 && !this.closed) {
      try {
        if (!(await this.round())) await this.pause(20);
      } catch (err) {
        // The database is away: the subscribers keep waiting (until their deadline), the loop retries.
        this.o.logger.warn({ err: (err as Error).message }, "feed: catch-up read failed; retrying");
        await this.pause(200);
      }
    }
  }

  /** One step of the group; false when nothing could move (wait for a change). */
  private async round(): Promise<boolean> {
    const now = Date.now();
    const fan = this.o.fanOut;
    const eligible: Watcher[] = [];
    for (const w of this.group) {
      if (w.closed) continue;
      if (now > w.deadline) {
        this.refused++;
        w.fail(
          new FeedRefusal("unavailable", "catching up took longer than this server allows under current load; resume later", this.o.retryAfterMs()),
        );
        continue;
      }
      // A watcher still draining what it got waits; the others go on without it.
      if (w.hasRoom()) eligible.push(w);
    }
    if (eligible.length === 0) return false;

    // New subscribers are checked against the log together: one read for however many arrived
    // since the last, and at most one every BOUNDS_EVERY_MS while they keep arriving (unless the
    // room is full).
    const unchecked = eligible.filter((w) => !w.validated);
    if (unchecked.length > 0 && (now - this.lastBoundsRead >= BOUNDS_EVERY_MS || this.o.roomFull?.())) {
      this.lastBoundsRead = now;
      this.reads++;
      const bounds = await logBounds(this.o.db);
      this.compactedThrough = bounds.compactedThrough;
      this.validate(unchecked, bounds.head, bounds.compactedThrough);
    }
    const ready = eligible.filter((w) => !w.closed && w.validated);
    if (ready.length === 0) return false;
    const min = ready.reduce((m, w) => (w.cursor < m ? w.cursor : m), ready[0]!.cursor);
    if (min >= this.joinFloor()) {
      // Everyone is within the fan-out's memory (or ahead of it): no page read needed.
      let moved = false;
      let ahead = false;
      for (const w of ready) {
        // Ahead of this replica's fan-out (a cursor from a faster replica, or a backlog the tailer
        // has not read yet): wait for the tailer.
        if (w.cursor > fan.head || w.backlogHead > fan.head) {
          ahead = true;
          continue;
        }
        this.join(w);
        moved = true;
      }
      // A cursor ahead of this replica (a client that came from a faster one): read the log now.
      if (ahead) this.o.pull();
      return moved;
    }

    this.reads++;
    const page = await this.o.readLog(min, this.o.pageSize);
    this.compactedThrough = page.compactedThrough;
    const head = fan.head;
    // The fan-out owns everything after its head: deliver up to there, join, and let it carry on.
    const events = page.events.filter((e) => e.revision <= head);
    const full = page.events.length === this.o.pageSize;
    let covered = full ? page.events.at(-1)!.revision : page.head;
    if (covered > head) covered = head;
    const frames = new Map<string, Frame | null>();
    let moved = false;
    for (const w of ready) {
      if (w.closed) continue;
      if (!w.fromZero && page.compactedThrough > w.cursor) {
        w.fail(compactedError(w.cursor));
        continue;
      }
      if (w.cursor < covered) {
        const key = `${w.view.key}\u0000${w.cursor}`;
        let f = frames.get(key);
        if (f === undefined) frames.set(key, (f = this.frame(events, w, covered)));
        if (f) w.pushEvents(f);
        else w.advance(covered);
        moved = true;
      }
      if (w.cursor >= this.joinFloor() && w.cursor <= fan.head && w.backlogHead <= fan.head) {
        this.join(w);
        moved = true;
      }
    }
    return moved;
  }

  /**
   * The lowest cursor that may join from the fan-out's memory. Not below the compaction floor:
   * memory may still hold events compaction has removed, and a replay from 0 promises exactly
   * what is retained.
   */
  private joinFloor(): bigint {
    const floor = this.o.fanOut.floor;
    return this.compactedThrough > floor ? this.compactedThrough : floor;
  }

  private frame(events: LogEvent[], w: Watcher, covered: bigint): Frame | null {
    const visible = events.filter((e) => e.revision > w.cursor && e.revision <= covered && w.view.sees(e));
    return visible.length ? this.o.fanOut.eventFrame(visible, w.view, w.cursor, covered) : null;
  }

  private validate(ws: Watcher[], head: bigint, compactedThrough: bigint): void {
    for (const w of ws) {
      if (w.cursor > head) {
        w.fail(new DomainError("out_of_range", `after_revision ${w.cursor} is ahead of the log (head ${head}); replay from 0`));
      } else if (!w.fromZero && compactedThrough > w.cursor) {
        w.fail(compactedError(w.cursor));
      } else {
        w.validated = true;
        w.backlogHead = head;
      }
    }
  }

  private join(w: Watcher): void {
    if (w.closed) return;
    this.group.delete(w);
    w.fromZero = false;
    this.o.fanOut.join(w);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.running;
  }
}
