import { generateKeyPairSync, randomBytes } from "node:crypto";
import { inject } from "vitest";
import pg from "pg";
import pino from "pino";
import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import type { Transport } from "@connectrpc/connect";
import { bearer, clientsFor, type Clients } from "../../bench/lib/clients.js";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { loadConfig, type Config } from "../../src/server/config.js";
import { createAppContext, type AppContext } from "../../src/server/context.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { API_KEY_PREFIX, newSecret } from "../../src/domain/ids.js";
import { dataDirFor } from "../../bench/lib/cluster.js";

/** Creates a fresh database on the run's PostgreSQL and returns its URL. */
export async function createTestDatabase(): Promise<string> {
  const admin = inject("pgAdminUrl");
  const name = `t_${randomBytes(6).toString("hex")}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`create database ${name}`);
  await client.end();
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface Harness {
  ctx: AppContext;
  server: RunningServer;
  databaseUrl: string;
  /** Every line the server logged, for assertions about what reaches the logs. */
  logs: string[];
  /** gRPC through the grpc-js server. */
  grpc: Clients;
  /** Connect protocol over HTTP/1.1 through connect-node. */
  connect: Clients;
  /** Both, for tests that must hold on each transport. */
  transports: { name: string; clients: Clients }[];
  grpcAddress: string;
  /** The admin key the harness's clients use. */
  adminKey: string;
  /** Admin-authenticated transports, for clients of any service. */
  grpcTransport: Transport;
  connectTransport: Transport;
  /** Clients on both transports with another key (undefined: no credentials at all). */
  as(key: string | undefined): { grpc: Clients; connect: Clients };
  close(): Promise<void>;
}

export async function startHarness(opts: { databaseUrl?: string; config?: Partial<Config>; sequencerTickMs?: number } = {}): Promise<Harness> {
  const databaseUrl = opts.databaseUrl ?? (await createTestDatabase());
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const logger = pino({ level: "debug" }, sink);
  const adminKey = newSecret(API_KEY_PREFIX);
  const config: Config = {
    ...loadConfig({}),
    // The data folder holds the log's signing key and its last checkpoint: one per database.
    dataDir: dataDirFor(databaseUrl),
    adminKey,
    databaseUrl,
    grpcPort: 0,
    httpPort: 0,
    dbPoolSize: 10,
    // Every suite's deliberate failures come from 127.0.0.1; limits.test.ts tests the limits.
    authFailuresPerMinute: 1_000_000,
    anonymousIssuePerMinute: 1_000_000,
    ...opts.config,
  };
  // As loadConfig derives it from the environment: room for every watcher a connection may hold.
  config.http2MaxConcurrentStreams = opts.config?.http2MaxConcurrentStreams ?? config.maxWatchersPerConnection + 150;
  const ctx = await createAppContext(config, { logger, sequencerTickMs: opts.sequencerTickMs });
  const server = await startServer(ctx);
  const grpcAddress = `127.0.0.1:${server.grpcPort}`;
  const transports = (key: string | undefined) => {
    const interceptors = key ? [bearer(key)] : [];
    return {
      grpc: createGrpcTransport({ baseUrl: `http://${grpcAddress}`, interceptors }),
      connect: createConnectTransport({ baseUrl: `http://127.0.0.1:${server.httpPort}`, httpVersion: "1.1", interceptors }),
    };
  };
  const as = (key: string | undefined) => {
    const t = transports(key);
    return { grpc: clientsFor(t.grpc), connect: clientsFor(t.connect) };
  };
  const admin = transports(adminKey);
  const { grpc: grpcClients, connect: connectClients } = as(adminKey);
  return {
    ctx,
    server,
    databaseUrl,
    logs,
    grpc: grpcClients,
    connect: connectClients,
    transports: [
      { name: "grpc", clients: grpcClients },
      { name: "connect", clients: connectClients },
    ],
    grpcAddress,
    adminKey,
    grpcTransport: admin.grpc,
    connectTransport: admin.connect,
    as,
    close: () => server.shutdown(),
  };
}

/** A fresh raw 32-byte Ed25519 public key. */
export function publicKey(): Uint8Array {
  const { publicKey: key } = generateKeyPairSync("ed25519");
  return new Uint8Array(key.export({ type: "spki", format: "der" }).subarray(-32));
}

export { grpc, bearer, clientsFor, type Clients };
