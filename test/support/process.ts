import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { freePort } from "./global-setup.js";

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

/** Runs `agentid serve` as a real process and waits until it listens. */
export async function spawnServe(env: Record<string, string>): Promise<ServeProcess> {
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const proc = spawn(process.execPath, [bin, "serve"], {
    env: { ...process.env, AGENTID_GRPC_PORT: String(grpcPort), AGENTID_HTTP_PORT: String(httpPort), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (d) => (out += d));
  proc.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${out}`)), 60_000);
    const check = () => {
      if (out.includes('"msg":"agentid serving"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on("data", check);
    exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`serve exited:\n${out}`));
    });
  });
  return { proc, grpcPort, httpPort, url: `http://127.0.0.1:${httpPort}`, output: () => out, exited };
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
