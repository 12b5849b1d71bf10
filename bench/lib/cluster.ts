// Real processes for fault tests and benchmarks: a PostgreSQL of one's own (to stop and start),
// and `agentid serve` replicas (to SIGKILL). Used by bench/ and by test/ (which imports it from here): no vitest imports.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedServer } from "../../src/store/embedded.js";
import { API_KEY_PREFIX, newSecret } from "../../src/domain/ids.js";
import { bearer, clientsFor, type Clients } from "./clients.js";
import { startSystemPostgres } from "./system-postgres.js";

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

/** The postmaster's pid (a backend's parent), to measure PostgreSQL's CPU with cpuSeconds. */
export async function postmasterPid(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ pid: number }>("select pg_backend_pid() as pid");
    const stat = readFileSync(`/proc/${rows[0]!.pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } finally {
    await c.end();
  }
}

export interface OwnPostgres {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

/**
 * A PostgreSQL in its own temp folder and port, which a test may stop and start: the embedded
 * build, or the system's (with JIT) when AGENTID_TEST_POSTGRES=system.
 */
export async function startOwnPostgres(): Promise<OwnPostgres> {
  const dataDir = await mkdtemp(join(tmpdir(), "agentid-own-pg-"));
  // As root, PostgreSQL runs as a "postgres" user that must be able to enter the folder.
  await chmod(dataDir, 0o755);
  const port = await freePort();
  if (process.env.AGENTID_TEST_POSTGRES === "system") {
    const sys = await startSystemPostgres(dataDir, port);
    let up = true;
    const stop = async () => {
      if (up) await sys.stop();
      up = false;
    };
    return {
      url: sys.url,
      stop,
      async start() {
        if (!up) await sys.start();
        up = true;
      },
      async destroy() {
        await stop().catch(() => {});
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  }
  let server: EmbeddedServer | undefined = await startEmbeddedPostgres({ dataDir, port });
  const url = server.url;
  return {
    url,
    async stop() {
      await server?.stop();
      server = undefined;
    },
    async start() {
      server ??= await startEmbeddedPostgres({ dataDir, port });
    },
    async destroy() {
      await server?.stop().catch(() => {});
      server = undefined;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface Replica {
  grpcUrl: string;
  httpUrl: string;
  process: ChildProcess;
  exited: Promise<number | null>;
  /** Output, for a failing test's message. */
  output: string[];
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const BIN = resolve(import.meta.dirname, "../../bin/agentid.js");

function canConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      res(true);
    });
    s.once("error", () => res(false));
  });
}

/**
 * The data folder of servers using this database: it holds the log's signing key and the last
 * checkpoint signed, so replicas of one database share them, and other databases do not.
 */
export function dataDirFor(databaseUrl: string): string {
  return join(tmpdir(), "agentid-test-data", createHash("sha256").update(databaseUrl).digest("hex").slice(0, 16));
}

/** Every replica started here accepts this admin key. */
export const CLUSTER_ADMIN_KEY = newSecret(API_KEY_PREFIX);

/** Admin clients for a replica. */
export function replicaClients(grpcUrl: string): Clients {
  return clientsFor(createGrpcTransport({ baseUrl: grpcUrl, interceptors: [bearer(CLUSTER_ADMIN_KEY)] }));
}

/** Starts `agentid serve` as its own process on free ports; resolves once both ports answer. */
export async function startReplica(databaseUrl: string, env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Replica> {
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const child = spawn(process.execPath, [...nodeArgs, BIN, "serve"], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      AGENTID_GRPC_PORT: String(grpcPort),
      AGENTID_HTTP_PORT: String(httpPort),
      LOG_LEVEL: "warn",
      AGENTID_ADMIN_KEY: CLUSTER_ADMIN_KEY,
      AGENTID_DATA_DIR: dataDirFor(databaseUrl),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  child.stdout!.on("data", (d) => output.push(String(d)));
  child.stderr!.on("data", (d) => output.push(String(d)));
  const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 60_000;
  while (!((await canConnect(httpPort)) && (await canConnect(grpcPort)))) {
    if (gone) throw new Error(`replica exited before serving:\n${output.join("")}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`replica did not start within 60s:\n${output.join("")}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    grpcUrl: `http://127.0.0.1:${grpcPort}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    process: child,
    exited,
    output,
    async kill(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
