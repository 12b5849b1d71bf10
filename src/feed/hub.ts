import pg from "pg";
import type { Logger } from "pino";
import type { Db } from "../store/database.js";
import { headRevision, readRevocationsAfter, REVOCATION_CHANNEL } from "../store/revocations.js";
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
  private readonly db: Db;
  private readonly logger: Logger;
  private readonly tickMs: number;
  private readonly queueLimit: number;
  private listener: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pulling: Promise<void> | undefined;
  private pullAgain = false;
  private closed = false;
  private listenBackoffMs = 100;

  constructor(private readonly opts: HubOptions) {
    this.db = opts.db;
    this.logger = opts.logger;
    this.tickMs = opts.tickMs ?? 1000;
    this.queueLimit = opts.queueLimit ?? 10_000;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  async start(): Promise<void> {
    this.head = await headRevision(this.db);
    await this.listen();
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.opts.databaseUrl });
    client.on("notification", () => this.pull());
    client.on("error", (err) => {
      this.logger.warn({ err: err.message }, "feed: LISTEN connection lost; reconnecting");
      this.relisten(client);
    });
    client.on("end", () => this.relisten(client));
    await client.connect();
    await client.query(`listen ${REVOCATION_CHANNEL}`);
    this.listener = client;
    this.listenBackoffMs = 100;
    // Anything committed while we were not listening.
    this.pull();
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

  private tick(): void {
    this.pull();
    const head = this.head;
    for (const w of this.watchers) if (w.synced) w.pushProgress(head);
  }

  /** Reads everything after head; concurrent calls coalesce into one more read. */
  pull(): void {
    if (this.closed) return;
    if (this.pulling) {
      this.pullAgain = true;
      return;
    }
    this.pulling = this.readNew()
      .catch((err: Error) => this.logger.warn({ err: err.message }, "feed: reading the log failed; retrying on next tick"))
      .finally(() => {
        this.pulling = undefined;
        if (this.pullAgain) {
          this.pullAgain = false;
          this.pull();
        }
      });
  }

  private async readNew(): Promise<void> {
    for (;;) {
      const rows = await readRevocationsAfter(this.db, this.head, PAGE);
      for (const event of rows) {
        // One message object per event, shared by every watcher.
        const message = { kind: "revocation" as const, event };
        this.head = event.revision;
        for (const w of this.watchers) if (w.synced) w.pushEvent(message);
      }
      if (rows.length < PAGE) return;
    }
  }

  /**
   * A watcher that first replays the log after `after` from the database, then joins the live
   * fan-out. The switch happens in one synchronous step, so nothing falls between the two.
   */
  subscribe(after: bigint): Watcher {
    const w = new Watcher(after, this.queueLimit, (x) => this.watchers.delete(x));
    if (this.closed) {
      w.end();
      return w;
    }
    this.watchers.add(w);
    this.replay(w).catch((err: Error) =>
      w.fail(err instanceof DomainError ? err : new DomainError("unavailable", "reading the revocation log failed; retry")),
    );
    return w;
  }

  private async replay(w: Watcher): Promise<void> {
    const logHead = await headRevision(this.db);
    if (w.cursor > logHead) {
      throw new DomainError(
        "out_of_range",
        `after_revision ${w.cursor} is ahead of the log (head ${logHead}); replay from 0`,
      );
    }
    const page = Math.max(1, Math.min(PAGE, Math.floor(this.queueLimit / 2)));
    for (;;) {
      await w.drained(page);
      const rows = await readRevocationsAfter(this.db, w.cursor, page);
      for (const event of rows) w.pushEvent({ kind: "revocation", event });
      if (w.closed) return;
      if (rows.length < page && w.cursor >= this.head) break;
    }
    w.synced = true;
    w.pushProgress(this.head);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const w of this.watchers) w.end();
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => {});
    await this.pulling;
  }
}
