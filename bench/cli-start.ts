// `npx tsx bench/cli-start.ts [runs]`: how long one `agentid` call takes to start, through the
// esbuild bundle (bin/agentid.js, today) and through tsx (how bin/agentid.js ran before), beside a
// bare `node -e 0` in the same run. Alternated runs; medians.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { root } from "./lib/procs.js";

const runs = Number(process.argv[2] ?? 10);
const commands: Record<string, string[]> = {
  "node -e 0 (floor)": ["-e", "0"],
  "bin/agentid.js (dist bundle)": [join(root, "bin/agentid.js"), "key", "generate"],
  "tsx src/cli/main.ts (before)": ["--import", "tsx", join(root, "src/cli/main.ts"), "key", "generate"],
};
spawnSync(process.execPath, [join(root, "bin/build.js")]);
const times: Record<string, number[]> = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
for (let i = 0; i < runs; i++) {
  for (const [name, argv] of Object.entries(commands)) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, argv, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    if (r.status !== 0) throw new Error(`${name} failed: ${r.stderr}`);
    times[name]!.push(performance.now() - t0);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const before = median(times["tsx src/cli/main.ts (before)"]!);
for (const [name, xs] of Object.entries(times)) {
  console.log(`${name.padEnd(32)} median ${median(xs).toFixed(0).padStart(6)} ms  (${(median(xs) / before).toFixed(2)}x of tsx)`);
}
