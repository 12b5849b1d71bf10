/**
 * Hands queued frames to waiting streams in slices, yielding to the event loop between slices.
 * Without it, one batch fanned out to 10,000 streams resumes 10,000 stream writers in one
 * uninterrupted run of microtasks, and every other request on the replica (Revoke first) waits
 * behind it. With it, a Revoke or Introspect that arrives mid fan-out waits at most one slice.
 * A slice ends after `slice` streams or `sliceBytes` bytes, whichever comes first: the streams'
 * writes run in the same turn, and their cost grows with the bytes (a catch-up frame of 1,000
 * events costs what a hundred live ones do).
 *
 * Bounded slices are the whole of the sharing: the next slice follows at once (setImmediate,
 * after the I/O that arrived meanwhile). Slices no longer wait while unary calls are in flight:
 * under sustained revocations that made the feed wait behind the very writes it was delivering
 * (issue 28).
 */
export class Dispatcher {
  private pending: { flush(): number }[] = [];
  private scheduled = false;

  constructor(
    private readonly slice = 16,
    private readonly sliceBytes = 16 * 1024,
  ) {}

  schedule(w: { flush(): number }): void {
    this.pending.push(w);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }

  private run(): void {
    let i = 0;
    let bytes = 0;
    while (i < this.pending.length && i < this.slice && bytes < this.sliceBytes) bytes += this.pending[i++]!.flush();
    this.pending = i === this.pending.length ? [] : this.pending.slice(i);
    if (this.pending.length > 0) setImmediate(() => this.run());
    else this.scheduled = false;
  }
}
