import { resolve } from "node:path";

export interface Config {
  /** Empty: start the embedded PostgreSQL. */
  databaseUrl: string;
  dataDir: string;
  embeddedPgPort: number;
  host: string;
  grpcPort: number;
  httpPort: number;
  logLevel: string;
  tokenDefaultTtlMs: number;
  tokenMaxTtlMs: number;
  dbPoolSize: number;
  watchQueueLimit: number;
  maxWatchers: number;
  maxWatchersPerConnection: number;
  feedCompactIntervalMs: number;
  feedMinRetentionMs: number;
}

export class ConfigError extends Error {}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** Every setting, from the environment; the README's table lists the same names and defaults. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const config: Config = {
    databaseUrl: env.DATABASE_URL ?? "",
    dataDir: resolve(env.AGENTID_DATA_DIR || ".agentid"),
    embeddedPgPort: int(env, "AGENTID_PG_PORT", 54329, 1, 65535),
    host: env.AGENTID_HOST || "127.0.0.1",
    grpcPort: int(env, "AGENTID_GRPC_PORT", 50051, 0, 65535),
    httpPort: int(env, "AGENTID_HTTP_PORT", 8080, 0, 65535),
    logLevel: env.LOG_LEVEL || "info",
    tokenDefaultTtlMs: int(env, "AGENTID_TOKEN_DEFAULT_TTL_SECONDS", 3600, 1, 31 * 86400) * 1000,
    tokenMaxTtlMs: int(env, "AGENTID_TOKEN_MAX_TTL_SECONDS", 86400, 1, 366 * 86400) * 1000,
    dbPoolSize: int(env, "AGENTID_DB_POOL_SIZE", 20, 1, 500),
    watchQueueLimit: int(env, "AGENTID_WATCH_QUEUE_LIMIT", 10_000, 2, 1_000_000),
    maxWatchers: int(env, "AGENTID_MAX_WATCHERS", 10_000, 1, 1_000_000),
    maxWatchersPerConnection: int(env, "AGENTID_MAX_WATCHERS_PER_CONNECTION", 100, 1, 1_000_000),
    feedCompactIntervalMs: int(env, "AGENTID_FEED_COMPACT_INTERVAL_SECONDS", 60, 0, 86400) * 1000,
    feedMinRetentionMs: int(env, "AGENTID_FEED_MIN_RETENTION_SECONDS", 3600, 0, 366 * 86400) * 1000,
  };
  if (config.tokenDefaultTtlMs > config.tokenMaxTtlMs) {
    throw new ConfigError("AGENTID_TOKEN_DEFAULT_TTL_SECONDS must not exceed AGENTID_TOKEN_MAX_TTL_SECONDS");
  }
  return config;
}
