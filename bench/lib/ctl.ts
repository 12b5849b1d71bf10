// A long-running helper process driven by JSON lines: commands on its stdin, replies and events
// on its stdout. Runs as one Node process (`node --import tsx`), so its pid is the one to measure.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { root } from "./procs.js";

export const wall = () => performance.timeOrigin + performance.now();

export class Ctl {
  readonly proc: ChildProcess;
  private replies: ((v: any) => void)[] = [];
  private listeners = new Set<(v: any) => void>();
  ready: Promise<any>;

  constructor(file: string, env: Record<string, string> = {}) {
    this.proc = spawn(process.execPath, ["--import", "tsx", join(root, file)], {
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "inherit"],
    });
    const lines = createInterface({ input: this.proc.stdout! });
    let first: (v: any) => void = () => {};
    this.ready = new Promise((r) => (first = r));
    this.replies.push((v) => first(v));
    lines.on("line", (l) => {
      if (!l.startsWith("{")) return;
      const v = JSON.parse(l);
      if (v.event) for (const f of this.listeners) f(v);
      else this.replies.shift()?.(v);
    });
  }

  /** Sends a command; resolves with its reply (replies come back in order). */
  send<T = any>(cmd: Record<string, unknown>): Promise<T> {
    return new Promise((resolve) => {
      this.replies.push(resolve);
      this.proc.stdin!.write(JSON.stringify(cmd) + "\n");
    });
  }

  on(f: (v: any) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGTERM");
    await exited;
  }
}

/** Resident set size of a process, in bytes (VmRSS from /proc). */
export function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/**
 * CPU seconds a process and its descendants have used (Linux /proc), so that each figure can also
 * be given per CPU-second of the server: on a machine shared with other work, throughput follows
 * the CPU share a process gets, while requests per CPU-second follow the code.
 */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    let ticks = Number(f[11]) + Number(f[12]);
    for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(" ").filter(Boolean)) ticks += cpuSeconds(Number(child)) * 100;
    return ticks / 100;
  } catch {
    return NaN;
  }
}

/** CPU seconds the whole machine has been busy (all cores; Linux /proc/stat). */
export function machineCpuSeconds(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
  return (f.slice(0, 8).reduce((a, x) => a + x, 0) - f[3]! - f[4]!) / 100;
}

/** Command loop for the helper side. */
export function serve(handle: (cmd: any) => Promise<unknown> | unknown): void {
  const lines = createInterface({ input: process.stdin });
  let chain = Promise.resolve();
  lines.on("line", (l) => {
    if (!l.trim()) return;
    const cmd = JSON.parse(l);
    chain = chain.then(async () => {
      let out: unknown;
      try {
        out = await handle(cmd);
      } catch (err) {
        out = { error: String((err as Error)?.stack ?? err) };
      }
      process.stdout.write(JSON.stringify(out ?? {}) + "\n");
    });
  });
  lines.on("close", () => process.exit(0));
}

export function emit(event: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ event: true, ...event }) + "\n");
}
