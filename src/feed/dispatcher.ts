/**
 * Hands queued frames to waiting streams in slices, yielding to the event loop between slices.
 * Without it, one batch fanned out to 10,000 streams resumes 10,000 stream writers in one
 * uninterrupted run of microtasks, and every other request on the replica (Revoke first) waits
 * behind it. With it, a Revoke or Introspect that arrives mid fan-out waits at most one slice.
 * A slice ends after so many streams or bytes, whichever comes first: the streams' writes run in
 * the same turn, and their cost grows with the bytes (a catch-up frame of 1,000 events costs what
 * a hundred live ones do).
 *
 * Bounded slices are the whole of the sharing: the next slice follows at once (setImmediate, after
 * the I/O that arrived meanwhile), and neither side waits for the other. Live fan-out takes large
 * slices (256 streams, 1 MiB): every slice is a turn of the loop, and under sustained revocations
 * a replica's turns are slow; with 16 streams or 16 KiB (two or three joined frames) a slice,
 * 500 streams took dozens of turns and events reached watchers at p99 1.6-2.3 s, against
 * 0.4-0.5 s with these (bench/feed-under-load.ts, issue 28). While subscribers wait to catch up
 * (a reconnect storm), slices are small (16 streams, 16 KiB), so that setting up thousands of
 * streams and their catch-up pages is spread over many turns.
 */
export class Dispatcher {
  /**
   * Streams waiting for their turn, from `next` on. A slice moves `next` rather than copying what
   * is left: with 50,000 streams, copying the rest after every slice of 256 (and growing the copy
   * again with the next schedule) took more of the replica's time than the writes themselves.
   */
  private pending: { flush(): number }[] = [];
  private next = 0;
  private scheduled = false;

  constructor(
    /** Subscribers are waiting to catch up (a reconnect storm): slices are small then. */
    private readonly crowded: () => boolean = () => false,
  ) {}

  schedule(w: { flush(): number }): void {
    this.pending.push(w);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }

  private run(): void {
    const [slice, sliceBytes] = this.crowded() ? CROWDED : LIVE;
    const end = this.next + slice;
    let bytes = 0;
    while (this.next < this.pending.length && this.next < end && bytes < sliceBytes) bytes += this.pending[this.next++]!.flush();
    if (this.next === this.pending.length) {
      this.pending = [];
      this.next = 0;
    } else if (this.next * 2 >= this.pending.length) {
      // Drop the flushed half: each stream is copied at most once more on average.
      this.pending = this.pending.slice(this.next);
      this.next = 0;
    }
    if (this.pending.length > 0) setImmediate(() => this.run());
    else this.scheduled = false;
  }
}

/** Streams and bytes per slice: live fan-out, and while subscribers wait to catch up. */
const LIVE = [256, 1024 * 1024] as const;
const CROWDED = [16, 16 * 1024] as const;
