// Closed-loop rates measured in short alternating slices, so that whatever else loads a shared
// machine falls on every side alike; each side's rate is its operations over its own slices' time.

export interface AlternateOptions {
  concurrency: number;
  sliceMs: number;
  slices: number;
}

/** Runs `op` at `concurrency` for one slice; returns operations done and seconds taken. */
async function slice(op: (i: number) => Promise<unknown>, o: AlternateOptions): Promise<[number, number]> {
  let done = 0;
  const end = Date.now() + o.sliceMs;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: o.concurrency }, async (_, w) => {
      for (let i = 0; Date.now() < end; i++) {
        await op(w * 1_000_000 + i);
        done++;
      }
    }),
  );
  return [done, Number(process.hrtime.bigint() - start) / 1e9];
}

/** Alternates slices of each side; returns each side's operations per second. */
export async function alternate<K extends string>(sides: Record<K, (i: number) => Promise<unknown>>, o: AlternateOptions): Promise<Record<K, number>> {
  const totals = new Map<K, [number, number]>();
  for (let n = 0; n < o.slices; n++) {
    for (const [name, op] of Object.entries(sides) as [K, (i: number) => Promise<unknown>][]) {
      const [done, secs] = await slice(op, o);
      const t = totals.get(name) ?? [0, 0];
      totals.set(name, [t[0] + done, t[1] + secs]);
    }
  }
  return Object.fromEntries([...totals].map(([k, [done, secs]]) => [k, done / secs])) as Record<K, number>;
}

/** The options from BENCH_CONCURRENCY, BENCH_SLICE_MS and BENCH_SLICES. */
export function alternateOptions(defaults: AlternateOptions): AlternateOptions {
  return {
    concurrency: Number(process.env.BENCH_CONCURRENCY ?? defaults.concurrency),
    sliceMs: Number(process.env.BENCH_SLICE_MS ?? defaults.sliceMs),
    slices: Number(process.env.BENCH_SLICES ?? defaults.slices),
  };
}
