import type { RevocationRecord } from "../store/revocations.js";
import { DomainError } from "../domain/errors.js";

export type FeedMessage =
  | { kind: "revocation"; event: RevocationRecord }
  | { kind: "progress"; revision: bigint };

/**
 * One subscriber's bounded queue. The hub pushes, the stream handler pulls. A watcher too slow to
 * drain its queue is failed with RESOURCE_EXHAUSTED instead of growing memory or slowing others.
 */
export class Watcher {
  /** The last revision queued on this stream; events at or below it are never queued again. */
  cursor: bigint;
  /** False while the backlog is being replayed from the database; the hub skips it until then. */
  synced = false;
  private queue: FeedMessage[] = [];
  private waiting: { resolve: (m: FeedMessage | undefined) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private ended = false;

  constructor(
    after: bigint,
    private readonly limit: number,
    private readonly onClose: (w: Watcher) => void,
  ) {
    this.cursor = after;
  }

  get closed(): boolean {
    return this.ended || this.failure !== undefined;
  }

  get queued(): number {
    return this.queue.length;
  }

  pushEvent(message: FeedMessage & { kind: "revocation" }): void {
    if (this.closed || message.event.revision <= this.cursor) return;
    this.cursor = message.event.revision;
    this.push(message);
  }

  /** Everything up to `revision` has been queued (the rest was compacted away): move the cursor. */
  skipTo(revision: bigint): void {
    if (revision > this.cursor) this.cursor = revision;
  }

  pushProgress(revision: bigint): void {
    if (this.closed) return;
    // Never move a bookmark backwards: the replay may have run ahead of the hub's head.
    if (revision < this.cursor) revision = this.cursor;
    const last = this.queue[this.queue.length - 1];
    // A bookmark that is still queued is replaced rather than stacked.
    if (last?.kind === "progress") last.revision = revision;
    else this.push({ kind: "progress", revision });
  }

  private push(message: FeedMessage): void {
    if (this.waiting) {
      const { resolve } = this.waiting;
      this.waiting = undefined;
      resolve(message);
      return;
    }
    if (this.queue.length >= this.limit) {
      this.fail(
        new DomainError(
          "resource_exhausted",
          `watcher fell more than ${this.limit} messages behind; resume with after_revision=${this.deliveredUpTo()}`,
        ),
      );
      return;
    }
    this.queue.push(message);
  }

  /** The highest revision the client is known to have been handed. */
  private deliveredUpTo(): bigint {
    const firstEvent = this.queue.find((m) => m.kind === "revocation");
    return firstEvent ? firstEvent.event.revision - 1n : this.cursor;
  }

  /** Next message, or undefined once the watcher is ended; rejects when it failed. */
  next(): Promise<FeedMessage | undefined> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** Resolves once `room` more messages fit (the backlog replay waits instead of overflowing). */
  async drained(room: number): Promise<void> {
    while (!this.closed && this.queue.length + room > this.limit) await new Promise((r) => setTimeout(r, 5));
  }

  fail(err: Error): void {
    if (this.closed) return;
    this.failure = err;
    this.queue = [];
    this.release();
  }

  end(): void {
    if (this.closed) return;
    this.ended = true;
    this.release();
  }

  private release(): void {
    this.onClose(this);
    const waiting = this.waiting;
    this.waiting = undefined;
    if (this.failure) waiting?.reject(this.failure);
    else waiting?.resolve(undefined);
  }
}
