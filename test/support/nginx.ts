// Debian's nginx (nginx-light) for tests that put it in front of agentid.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";

function findNginx(): string | undefined {
  for (const p of ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"]) if (existsSync(p)) return p;
  const which = spawnSync("sh", ["-c", "command -v nginx"], { encoding: "utf8" });
  return which.status === 0 ? which.stdout.trim() : undefined;
}

/** The nginx binary, or undefined (the caller skips, and says so). */
export const NGINX = findNginx();

/** Runs nginx in the foreground with `dir`/nginx.conf, and waits until it listens on `port`. */
export async function startNginx(dir: string, port: number): Promise<{ process: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(NGINX!, ["-p", dir, "-e", join(dir, "error.log"), "-c", join(dir, "nginx.conf")], { stdio: "ignore" });
  await waitForPort(port, child, dir);
  return {
    process: child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

function waitForPort(port: number, child: ChildProcess, dir: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null) {
        readFile(join(dir, "error.log"), "utf8").then((log) => reject(new Error(`nginx exited: ${log}`)), reject);
        return;
      }
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), resolve()));
      s.once("error", () => (Date.now() > deadline ? reject(new Error("nginx did not start")) : setTimeout(attempt, 50)));
    };
    attempt();
  });
}
