import type { Logger } from "pino";
import type { LogEvent, LogPage } from "../store/revocation-reads.js";
import type { Sequencer } from "../store/sequencer.js";

/** Where the tailer hears of new events: the replica's sequencer, its one LISTEN and source of heads. */
export type LogSpine = Pick<Sequencer, "onHead" | "onNumbered">;

export interface TailerOptions {
  /** A page of the log after a revision (on the feed's own pool: never behind the write path). */
  readLog(after: bigint, limit: number): Promise<LogPage>;
  spine: LogSpine;
  /** The log's name in the spine. */
  log: string;
  logger: Logger;
  /** Safety tick: re-read the log this often even without a new head. */
  tickMs: number;
  pageSize: number;
  /** Called with each page of new events, in order; `through` is the last revision covered. */
  onEvents(events: LogEvent[], through: bigint): void;
  /** The log lost events after `head` that were never read (compaction); jump to `through`. */
  onGap(through: bigint): void;
  /** After every tick whose read succeeded: a bookmark is due. */
  onTick(): void;
}

/**
 * Tails the revocation log, following the replica's sequencer: the events its own passes number
 * are handed on as they are, without a read, when they continue from what was handed on before;
 * a head from another replica (its NOTIFY, heard by the sequencer) or a gap is read, in pages,
 * with concurrent reads coalesced; and a safety tick re-reads. The table is the truth: a lost
 * notification delays events by at most a tick, never loses them.
 */
export class LogTailer {
  /** Every event up to head has been handed on. */
  head: bigint;
  /** Database reads made (each a page). */
  reads = 0;
  /** Events handed on as this replica's sequencer numbered them, without a read. */
  handedOn = 0;
  private unsubscribe: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pulling: Promise<boolean> | undefined;
  private pullAgain = false;
  private closed = false;

  constructor(
    head: bigint,
    private readonly o: TailerOptions,
  ) {
    this.head = head;
  }

  async start(): Promise<void> {
    this.unsubscribe = [
      this.o.spine.onNumbered(this.o.log, (events) => this.numbered(events)),
      this.o.spine.onHead(this.o.log, (head) => {
        if (head > this.head) void this.pull();
      }),
    ];
    // Anything numbered before we followed.
    void this.pull();
    this.timer = setInterval(() => void this.tick(), this.o.tickMs);
    this.timer.unref();
  }

  /** Events this replica's sequencer just numbered (committed, in order, with their audiences). */
  private numbered(events: LogEvent[]): void {
    if (this.closed || events.length === 0) return;
    // A read in flight (or the one after it) covers them; a range that does not continue from
    // head (another replica numbered rows in between) is read.
    if (this.pulling || events[0]!.revision !== this.head + 1n) {
      void this.pull();
      return;
    }
    const through = events.at(-1)!.revision;
    this.head = through;
    this.handedOn += events.length;
    this.o.onEvents(events, through);
  }

  private async tick(): Promise<void> {
    // A bookmark is a promise that the log was read just now: when the database cannot be read,
    // watchers hear nothing, and a strict client fails closed instead of trusting a stale head.
    if (await this.pull()) this.o.onTick();
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
        this.o.logger.warn({ err: err.message }, "feed: reading the log failed; retrying on next tick");
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
      this.reads++;
      const page = await this.o.readLog(this.head, this.o.pageSize);
      if (this.closed) return;
      if (page.compactedThrough > this.head) {
        this.head = page.compactedThrough;
        this.o.onGap(page.compactedThrough);
      }
      const fresh = page.events.filter((e) => e.revision > this.head);
      if (fresh.length > 0) {
        const through = fresh.at(-1)!.revision;
        this.head = through;
        this.o.onEvents(fresh, through);
      }
      if (page.events.length < this.o.pageSize) return;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const u of this.unsubscribe) u();
    await this.pulling;
  }
}
