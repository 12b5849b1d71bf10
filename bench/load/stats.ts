/** The p-quantile (0..1) of samples, by the nearest rank below; NaN when there are none. */
export function quantile(xs: ArrayLike<number>, p: number): number {
  const s = Float64Array.from(xs).sort();
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN;
}

/** Latency samples in microseconds, summarised; shared by every load generator. */
export class Recorder {
  private samples: number[] = [];
  count = 0;
  errors = 0;
  firstError = "";

  record(startNs: bigint): void {
    this.count++;
    // Keep at most 200k samples: enough for a stable p99 without unbounded memory.
    if (this.samples.length < 200_000) this.samples.push(Number(process.hrtime.bigint() - startNs) / 1000);
  }

  fail(err: unknown): void {
    this.errors++;
    if (!this.firstError) this.firstError = String((err as Error)?.message ?? err);
  }

  summary(durationMs: number) {
    return {
      count: this.count,
      errors: this.errors,
      firstError: this.firstError,
      durationMs,
      perSecond: (this.count / durationMs) * 1000,
      p50us: quantile(this.samples, 0.5),
      p99us: quantile(this.samples, 0.99),
    };
  }
}

export type Summary = ReturnType<Recorder["summary"]>;

/** Runs `concurrency` closed loops of `once` for warmupMs (discarded), then durationMs. */
export async function closedLoop(
  concurrency: number,
  warmupMs: number,
  durationMs: number,
  once: (i: number) => Promise<void>,
): Promise<Summary> {
  let rec = new Recorder();
  let stopAt = Date.now() + warmupMs;
  let n = 0;
  const loop = async () => {
    while (Date.now() < stopAt) {
      const t = process.hrtime.bigint();
      try {
        await once(n++);
        rec.record(t);
      } catch (err) {
        rec.fail(err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  rec = new Recorder();
  const start = Date.now();
  stopAt = start + durationMs;
  await Promise.all(Array.from({ length: concurrency }, loop));
  return rec.summary(Date.now() - start);
}
