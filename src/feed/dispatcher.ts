import { performance, type EventLoopUtilization } from "node:perf_hooks";

/**
 * Hands queued frames to waiting streams in slices, yielding to the event loop between slices.
 * Without it, one batch fanned out to 10,000 streams resumes 10,000 stream writers in one
 * uninterrupted run of microtasks, and every other request on the replica (Revoke first) waits
 * behind it. With it, a Revoke or Introspect that arrives mid fan-out waits at most one slice.
 * A slice ends after `slice` streams or `sliceBytes` bytes, whichever comes first: the streams'
 * writes run in the same turn, and their cost grows with the bytes (a catch-up frame of 1,000
 * events costs what a hundred live ones do).
 *
 * Revoke, Issue and Introspect go first: while any of them is in flight (`contended`) and the
 * loop was busier than `maxUtilization` over the last window, slices wait 2 ms (a timer)
 * instead of following at once (setImmediate). Under a storm the feed then delivers more slowly,
 * joining more per write, and the time and the garbage it would have taken stay with those calls;
 * with none in flight, it runs at full speed.
 */
export class Dispatcher {
  private pending: { flush(): number }[] = [];
  private scheduled = false;
  private window = performance.eventLoopUtilization();
  private windowStart = performance.now();
  private busy = false;

  constructor(
    private readonly contended: () => boolean = () => false,
    private readonly slice = 16,
    private readonly sliceBytes = 16 * 1024,
    private readonly maxUtilization = 0.5,
    private readonly windowMs = 25,
  ) {}

  schedule(w: { flush(): number }): void {
    this.pending.push(w);
    if (!this.scheduled) {
      this.scheduled = true;
      this.next();
    }
  }

  private run(): void {
    let i = 0;
    let bytes = 0;
    while (i < this.pending.length && i < this.slice && bytes < this.sliceBytes) bytes += this.pending[i++]!.flush();
    this.pending = i === this.pending.length ? [] : this.pending.slice(i);
    if (this.pending.length > 0) this.next();
    else this.scheduled = false;
  }

  private next(): void {
    const now = performance.now();
    if (now - this.windowStart >= this.windowMs) {
      const u: EventLoopUtilization = performance.eventLoopUtilization(this.window);
      this.window = performance.eventLoopUtilization();
      this.windowStart = now;
      this.busy = u.utilization > this.maxUtilization;
    }
    if (this.busy && this.contended()) setTimeout(() => this.run(), 2);
    else setImmediate(() => this.run());
  }
}
