import type { Logger } from "pino";
import { Listener } from "../store/listener.js";
import type { LogEvent, LogPage } from "../store/revocation-reads.js";

export interface TailerOptions {
  /** A page of the log after a revision (on the feed's own pool: never behind the write path). */
  readLog(after: bigint, limit: number): Promise<LogPage>;
  /** For the dedicated LISTEN connection. */
  databaseUrl: string;
  /** NOTIFY channel the sequencer wakes replicas on. */
  channel: string;
  logger: Logger;
  /** Safety tick: re-read the log this often even without a notification. */
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
 * Tails the revocation log: LISTEN (with backoff on a lost connection), a safety tick, and pull
 * coalescing. The table is the truth; NOTIFY only says "something new", so a lost notification or
 * a dropped LISTEN connection delays events but never loses them.
 */
export class LogTailer {
  /** Every event up to head has been read and handed on. */
  head: bigint;
  /** Database reads made (each a page). */
  reads = 0;
  private listener: Listener | undefined;
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
    this.listener = new Listener({
      databaseUrl: this.o.databaseUrl,
      channels: [this.o.channel],
      logger: this.o.logger,
      name: "feed",
      onNotification: () => void this.pull(),
      onReconnect: () => void this.pull(),
    });
    await this.listener.start();
    // Anything committed before we listened.
    void this.pull();
    this.timer = setInterval(() => void this.tick(), this.o.tickMs);
    this.timer.unref();
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
    await this.listener?.close();
    await this.pulling;
  }
}
