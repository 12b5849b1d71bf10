/**
 * Runs work in batches: items that arrive while the database is busy are handed together to one
 * `run` (one statement, one round trip), at most `maxInFlight` batches at a time. Under light
 * load each item runs alone at once; under heavy load many share a round trip. Introspect's reads
 * and Issue's writes both go through it.
 */
export class Batcher<T> {
  private queue: T[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly run: (batch: T[]) => Promise<void>,
    private readonly maxInFlight: number,
    private readonly maxBatch: number,
  ) {}

  /** `run` settles each item (they carry their own resolve/reject); it must not throw. */
  add(item: T): void {
    this.queue.push(item);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    // After the current I/O callbacks: requests read in the same turn share a batch.
    setImmediate(() => {
      this.scheduled = false;
      while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
        this.inFlight++;
        void this.run(this.queue.splice(0, this.maxBatch)).finally(() => {
          this.inFlight--;
          this.schedule();
        });
      }
    });
  }
}
