import { DomainError } from "../domain/errors.js";
import type { Frame } from "./frame.js";
import type { View } from "./view.js";
import type { Dispatcher } from "./dispatcher.js";

/**
 * One stream's bounded queue of shared frames. The fan-out and the catch-up push, the stream
 * handler pulls. A watcher too slow to drain its queue is cut with RESOURCE_EXHAUSTED, naming the
 * revision to resume from, instead of growing memory or slowing the others.
 */
export class Watcher {
  /**
   * Every revision up to here is queued or was filtered out of this stream's view: frames are
   * accepted only when they continue from it, so nothing is queued twice or skipped.
   */
  cursor: bigint;
  /** In the live fan-out (true) or still waiting in the catch-up group. */
  synced = false;
  /** Subscribed from 0: asked for what is retained, so compaction below its cursor is no error. */
  fromZero: boolean;
  /** The catch-up group checked the cursor against the log (not ahead of it, not compacted away). */
  validated = false;
  /**
   * The log's head when the cursor was checked: the backlog. The stream joins the live fan-out
   * (and gets its first bookmark) only once it has everything up to here, so a subscriber never
   * hears "caught up" before revocations that committed before it subscribed.
   */
  backlogHead = 0n;
  private queue: Frame[] = [];
  private waiting: { resolve: (f: Frame | undefined) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private ended = false;
  private readonly closeHooks: ((w: Watcher) => void)[] = [];
  private flushing = false;

  constructor(
    after: bigint,
    readonly view: View,
    private readonly limit: number,
    /** The API key the stream runs on, and the client connection, for limits and key revocation. */
    readonly keyId: string,
    readonly connection: string,
    /** Date.now() after which a watcher still catching up is refused. */
    readonly deadline: number,
    /** Hands frames to a waiting stream in slices (see Dispatcher); without one, at once. */
    private readonly dispatcher?: Dispatcher,
  ) {
    this.cursor = after;
    this.fromZero = after === 0n;
  }

  get closed(): boolean {
    return this.ended || this.failure !== undefined;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Room for `n` more frames without coming near the bound (catch-up leaves half for live events). */
  hasRoom(n = 1): boolean {
    return this.queue.length + n <= this.limit / 2;
  }

  onClose(hook: (w: Watcher) => void): void {
    this.closeHooks.push(hook);
  }

  /** Queues an event frame that continues from the cursor; an older one is ignored (already had). */
  pushEvents(frame: Frame): void {
    if (this.closed || frame.through <= this.cursor) return;
    if (frame.after !== this.cursor) throw new Error(`feed bug: frame (${frame.after}, ${frame.through}] does not continue from ${this.cursor}`);
    this.cursor = frame.through;
    this.enqueue(frame);
  }

  /** Revisions up to `through` held nothing this view may see: move on without sending. */
  advance(through: bigint): void {
    if (through > this.cursor) this.cursor = through;
  }

  /** A bookmark; one still queued is replaced rather than stacked. Never behind the cursor. */
  pushProgress(frame: Frame): void {
    if (this.closed || frame.through < this.cursor) return;
    if (this.queue.at(-1)?.kind === "progress") {
      this.queue[this.queue.length - 1] = frame;
      return;
    }
    this.enqueue(frame);
  }

  private enqueue(frame: Frame): void {
    if (this.waiting && !this.dispatcher) {
      const { resolve } = this.waiting;
      this.waiting = undefined;
      resolve(frame);
      return;
    }
    if (this.queue.length >= this.limit) {
      this.fail(
        new DomainError(
          "resource_exhausted",
          `watcher fell more than ${this.limit} messages behind; resume with after_revision=${this.resumePoint()}`,
        ),
      );
      return;
    }
    this.queue.push(frame);
    if (this.waiting && !this.flushing) {
      this.flushing = true;
      this.dispatcher!.schedule(this);
    }
  }

  /** Hands the next frame to the waiting stream (the dispatcher calls it, a slice at a time). */
  flush(): void {
    this.flushing = false;
    const waiting = this.waiting;
    const f = this.queue.shift();
    if (!waiting || !f) {
      if (f) this.queue.unshift(f);
      return;
    }
    this.waiting = undefined;
    waiting.resolve(f);
  }

  /** The highest revision the client is known to have been handed everything up to. */
  resumePoint(): bigint {
    const first = this.queue.find((f) => f.kind === "events");
    return first ? first.after : this.cursor;
  }

  /** Next frame, or undefined once the watcher is ended; rejects when it failed. */
  next(): Promise<Frame | undefined> {
    const f = this.queue.shift();
    if (f) return Promise.resolve(f);
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
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
    for (const h of this.closeHooks) h(this);
    const waiting = this.waiting;
    this.waiting = undefined;
    if (this.failure) waiting?.reject(this.failure);
    else waiting?.resolve(undefined);
  }
}
