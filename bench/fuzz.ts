// The long fuzz run: npm run fuzz [-- --requests N --seed S --concurrency C]. Starts its own
// PostgreSQL and `agentid serve` process, sends generated requests to every RPC on both ports
// (test/support/fuzz.ts says how), then prints requests, distinct RPCs, codes seen, peak RSS and
// every INTERNAL or UNKNOWN answer, grouped. Exits non-zero on any finding or if the server died.
import { parseArgs } from "node:util";
import { startOwnPostgres } from "./lib/cluster.js";
import { isGrpcJsBuiltIn, METHODS, runFuzz } from "../test/support/fuzz.js";
import { rss } from "./lib/ctl.js";
import { startFuzzTarget } from "../test/support/fuzz-setup.js";

const { values } = parseArgs({
  options: { requests: { type: "string", default: "100000" }, seed: { type: "string", default: "1" }, concurrency: { type: "string", default: "16" } },
});
const count = Number(values.requests);
const seed = Number(values.seed);
const concurrency = Number(values.concurrency);

const pg = await startOwnPostgres();
let failed = false;
try {
  const t = await startFuzzTarget(pg.url);
  const pid = t.replica.process.pid!;
  const startRss = rss(pid);
  const started = Date.now();
  const { peakRss } = await runFuzz(t.fuzzer, {
    seed,
    count,
    concurrency,
    serverPid: pid,
    onProgress: (n) => process.stderr.write(`  ${n} requests, server RSS ${(rss(pid) / 2 ** 20).toFixed(0)} MiB\n`),
  });
  const f = t.fuzzer;
  let up = true;
  try {
    await t.alive();
  } catch {
    up = false;
  }
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  console.log(`requests: ${f.requests} in ${((Date.now() - started) / 1000).toFixed(0)} s (seed ${seed}, concurrency ${concurrency})`);
  console.log(`distinct RPCs: ${f.rpcs.size} of ${METHODS.length}`);
  console.log(`codes seen: ${[...f.outcomes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(", ")}`);
  console.log(`server RSS: ${mib(startRss)} at start, peak ${mib(peakRss)}`);
  console.log(`server up after the run: ${up && t.replica.process.exitCode === null ? "yes" : "NO"}`);
  const groups = new Map<string, number>();
  for (const x of f.findings) {
    const k = `${x.code} ${x.protocol} ${x.generator}: ${x.message.replace(/field no \d+ wire type \d+|wire type \d+/g, "...").slice(0, 100)} (e.g. ${x.rpc})`;
    groups.set(k, (groups.get(k) ?? 0) + 1);
  }
  const builtIn = f.findings.filter(isGrpcJsBuiltIn).length;
  console.log(`INTERNAL/UNKNOWN answers: ${f.findings.length} (${builtIn} of them grpc-js's own, before agentid's code: see isGrpcJsBuiltIn)`);
  for (const [k, n] of [...groups].sort((a, b) => b[1] - a[1])) console.log(`  ${n}x ${k}`);
  // Exchanges with no answer (a reset connection or session, e.g. after a framing fault on a shared
  // HTTP/2 session) are not findings, but say what they were.
  const silent = new Map<string, number>();
  for (const [k, n] of f.silent) silent.set(k, n);
  console.log(`no answer, by cause: ${[...silent].sort((x, y) => y[1] - x[1]).slice(0, 6).map(([k, n]) => `${k} ${n}`).join("; ")}`);
  const unhandled = t.replica.output.join("").split("\n").filter((l) => l.includes("unhandled error"));
  console.log(`"unhandled error" log lines: ${unhandled.length}`);
  for (const l of unhandled.slice(0, 5)) console.log(`  ${l.slice(0, 400)}`);
  failed = f.findings.length > builtIn || !up || unhandled.length > 0;
  t.fuzzer.close();
  await t.replica.kill();
} finally {
  await pg.destroy();
}
process.exit(failed ? 1 : 0);
