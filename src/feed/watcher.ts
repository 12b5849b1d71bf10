import { DomainError } from "../domain/errors.js";
import { Frame, MAX_FRAME_EVENTS } from "./frame.js";
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

  /** Hands what is queued to the waiting stream (the dispatcher calls it, a slice at a time); the bytes handed. */
  flush(): number {
    this.flushing = false;
    const waiting = this.waiting;
    const f = waiting && this.take();
    if (!f) return 0;
    this.waiting = undefined;
    waiting.resolve(f);
    return f.bytes.length;
  }

  /**
   * The next message: the queue's first frame, or its leading run of event frames joined into one
   * (up to MAX_FRAME_EVENTS events). A stream behind by many small batches then costs one write,
   * not one per batch, so a busy feed writes less, not more.
   */
  private take(): Frame | undefined {
    const first = this.queue[0];
    if (first?.kind !== "events") return this.queue.shift();
    let n = 0;
    let count = first.message.events.length;
    while (n + 1 < this.queue.length) {
      const f = this.queue[n + 1]!;
      if (f.kind !== "events" || count + f.message.events.length > MAX_FRAME_EVENTS) break;
      count += f.message.events.length;
      n++;
    }
    return Frame.join(this.queue.splice(0, n + 1));
  }

  /** The highest revision the client is known to have been handed everything up to. */
  resumePoint(): bigint {
    const first = this.queue.find((f) => f.kind === "events");
    return first ? first.after : this.cursor;
  }

  /** Next frame, or undefined once the watcher is ended; rejects when it failed. */
  next(): Promise<Frame | undefined> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.queue.length > 0 && (!this.dispatcher || this.ended)) return Promise.resolve(this.take());
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      // Even a stream with frames queued waits its turn: its writes count against the slice
      // like everyone's, whatever resumed it (a drained socket, the previous write).
      if (this.queue.length > 0 && !this.flushing) {
        this.flushing = true;
        this.dispatcher!.schedule(this);
      }
    });
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
