import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { startReplica } from "../../bench/lib/cluster.js";

export const root = join(import.meta.dirname, "..", "..");
export const bin = join(root, "bin", "agentid.js");

export interface ServeProcess {
  proc: ChildProcess;
  grpcPort: number;
  httpPort: number;
  url: string;
  output: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** Runs `agentid serve` as a real process (the cluster helper's replica) and waits until it listens. */
export async function spawnServe(env: Record<string, string>): Promise<ServeProcess> {
  // No admin key unless the caller gives one: first-start behaviour is under test here.
  const r = await startReplica(env.DATABASE_URL ?? "", { AGENTID_ADMIN_KEY: "", ...env });
  const port = (url: string) => Number(new URL(url).port);
  return {
    proc: r.process,
    grpcPort: port(r.grpcUrl),
    httpPort: port(r.httpUrl),
    url: r.httpUrl,
    output: () => r.output.join(""),
    exited: r.exited,
  };
}

/** Runs the CLI to completion. */
export function runCli(args: string[], env: Record<string, string> = {}, stdin?: string) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const proc = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d) => (stdout += d));
    proc.stderr.on("data", (d) => (stderr += d));
    proc.stdin.end(stdin ?? "");
    proc.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}
