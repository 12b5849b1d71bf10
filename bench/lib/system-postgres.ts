// The PostgreSQL the system's packages installed (Debian's postgresql: /usr/lib/postgresql/<v>/bin),
// run in a folder of one's own. Unlike the embedded build it has JIT (llvmjit), on by default, as
// on most servers users run: the feed's suites and benchmarks run on it too (issue 28). Used by
// bench/ and test/: no vitest imports.
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chown, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
const ROOT = "/usr/lib/postgresql";

/** The newest system PostgreSQL's bin folder, or undefined when none is installed. */
export function systemPostgresBin(): string | undefined {
  if (!existsSync(ROOT)) return undefined;
  const versions = readdirSync(ROOT)
    .filter((v) => /^[0-9]+$/.test(v) && existsSync(join(ROOT, v, "bin", "postgres")))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? join(ROOT, versions[0]!, "bin") : undefined;
}

/** PostgreSQL refuses to run as root: then it runs as the packages' "postgres" user. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("running as root, and there is no postgres user to run the system PostgreSQL as");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

export interface SystemPostgres {
  /** Database "agentid", as superuser "agentid" (trusted on loopback: for tests and benchmarks only). */
  url: string;
  /** Stops the server (fast shutdown); the folder stays, for start(). */
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** Initialises `dataDir` if needed and starts the system PostgreSQL on 127.0.0.1:`port`. */
export async function startSystemPostgres(dataDir: string, port: number): Promise<SystemPostgres> {
  const bin = systemPostgresBin();
  if (!bin) throw new Error(`no system PostgreSQL under ${ROOT} (Debian: apt-get install postgresql)`);
  const user = runAs();
  const as = { ...user, env: { ...process.env, LC_ALL: "C.UTF-8" } };
  const pgdata = join(dataDir, "pg");
  await mkdir(dataDir, { recursive: true });
  if (user) await chown(dataDir, user.uid, user.gid);
  if (!existsSync(join(pgdata, "PG_VERSION"))) {
    await run(join(bin, "initdb"), ["-D", pgdata, "-U", "agentid", "-A", "trust", "-E", "UTF8", "--no-sync"], as);
  }
  const options = `-p ${port} -k ${dataDir} -c listen_addresses=127.0.0.1 -c max_connections=300`;
  const ctl = (args: string[]) => run(join(bin, "pg_ctl"), ["-D", pgdata, "-w", "-t", "60", ...args], as);
  const start = async () => {
    await ctl(["-o", options, "-l", join(dataDir, "log"), "start"]);
  };
  await start();
  const client = new pg.Client({ host: "127.0.0.1", port, user: "agentid", database: "postgres" });
  await client.connect();
  try {
    const { rowCount } = await client.query("select 1 from pg_database where datname = 'agentid'");
    if (!rowCount) await client.query("create database agentid");
  } finally {
    await client.end();
  }
  return {
    url: `postgres://agentid@127.0.0.1:${port}/agentid`,
    stop: async () => {
      await ctl(["-m", "fast", "stop"]);
    },
    start,
  };
}
