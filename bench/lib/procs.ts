import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startReplica } from "./cluster.js";

export const root = join(import.meta.dirname, "..", "..");
const tsx = join(root, "node_modules", "tsx", "dist", "cli.mjs");

/**
 * Runs a TypeScript file in its own Node process with `arg` as JSON in a file (argv[2]), and
 * resolves with the JSON it prints last.
 */
export function runTs<T>(file: string, arg: unknown, env: Record<string, string> = {}): Promise<T> {
  const argFile = join(mkdtempSync(join(tmpdir(), "agentid-bench-arg-")), "arg.json");
  writeFileSync(argFile, JSON.stringify(arg));
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [tsx, join(root, "bench", file), argFile], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.on("exit", (code) => {
      const last = out.trim().split("\n").pop() ?? "";
      if (code !== 0) return reject(new Error(`${file} exited ${code}: ${out}`));
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${file} printed no JSON: ${out}`));
      }
    });
  });
}

/** Starts a long-running process that prints one JSON line when ready. */
export function startTs<T>(file: string, args: string[], env: Record<string, string> = {}): Promise<{ proc: ChildProcess; ready: T }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [tsx, join(root, file), ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    const onData = (d: Buffer) => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (!line) return;
      proc.stdout!.off("data", onData);
      proc.stdout!.resume();
      resolve({ proc, ready: JSON.parse(line) as T });
    };
    proc.stdout!.on("data", onData);
    proc.on("exit", (code) => reject(new Error(`${file} exited ${code}: ${out}`)));
  });
}

/** `agentid serve` as a real process on free ports (the tests' replica), for the bench scripts. */
export async function startAgentid(env: Record<string, string>, nodeArgs: string[] = []) {
  const r = await startReplica(env.DATABASE_URL ?? "", env, nodeArgs);
  /** SIGTERM, resolved once it has exited (at once if it already had). */
  const stop = () => r.kill();
  return { proc: r.process, grpcAddress: r.grpcUrl.slice("http://".length), url: r.httpUrl, stop };
}
