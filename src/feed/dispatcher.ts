/**
 * Hands queued frames to waiting streams in slices, yielding to the event loop between slices.
 * Without it, one batch fanned out to 10,000 streams resumes 10,000 stream writers in one
 * uninterrupted run of microtasks, and every other request on the replica (Revoke first) waits
 * behind it. With it, a Revoke or Introspect that arrives mid fan-out waits at most one slice.
 */
export class Dispatcher {
  private pending: { flush(): void }[] = [];
  private scheduled = false;

  constructor(private readonly slice = 64) {}

  schedule(w: { flush(): void }): void {
    this.pending.push(w);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }

  private run(): void {
    const batch = this.pending.length <= this.slice ? this.pending : this.pending.slice(0, this.slice);
    this.pending = batch === this.pending ? [] : this.pending.slice(this.slice);
    for (const w of batch) w.flush();
    if (this.pending.length > 0) setImmediate(() => this.run());
    else this.scheduled = false;
  }
}
