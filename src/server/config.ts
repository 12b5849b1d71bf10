import { resolve } from "node:path";
import { API_KEY_PREFIX, isWellFormedSecret } from "../domain/ids.js";

export interface Config {
  /** Empty: start the embedded PostgreSQL. */
  databaseUrl: string;
  dataDir: string;
  embeddedPgPort: number;
  host: string;
  grpcPort: number;
  httpPort: number;
  /** The OAuth issuer (RFC 8414): the URL clients reach agentid's HTTP port at. Empty: http://host:port. */
  issuer: string;
  logLevel: string;
  tokenDefaultTtlMs: number;
  tokenMaxTtlMs: number;
  dbPoolSize: number;
  watchQueueLimit: number;
  /** A well-formed ak_ key to install as admin; empty: create one on first start and print it. */
  adminKey: string;
  /** How far an agent's signed_at may be from the server's clock. */
  proofMaxSkewMs: number;
  /** Transparency log origin: the checkpoint's first line and the signing key's name. */
  auditOrigin: string;
  /** Ed25519 PKCS#8 PEM or base64 DER; empty: the key in auditKeyFile. */
  auditSigningKey: string;
  /** The signing key's file (mode 0600), created on first start; never in the database. Empty: in dataDir. */
  auditKeyFile: string;
  /** Serve the log's tiles to anyone, without an API key. */
  auditTilesPublic: boolean;
  auditCheckpointIntervalMs: number;
  maxWatchers: number;
  maxWatchersPerConnection: number;
  feedCompactIntervalMs: number;
  feedMinRetentionMs: number;
  /** Largest request message, on the wire and after decompression, on both ports. */
  maxRequestBytes: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS on both ports. */
  http2MaxConcurrentStreams: number;
  /** Open grpc.health.v1 Watch streams per server. */
  maxHealthWatchers: number;
  /** A connection must send its first bytes within this (HTTP port). */
  handshakeTimeoutMs: number;
  /** A connection with no request in flight (gRPC) or no traffic (HTTP) is closed after this. */
  idleTimeoutMs: number;
  /** Failed authentications per peer address per minute; beyond it RESOURCE_EXHAUSTED. */
  authFailuresPerMinute: number;
  /** Calls without an API key (an agent signing its own Issue) per peer address per minute. */
  anonymousIssuePerMinute: number;
  /** Prometheus /metrics on the HTTP port (docs/gateways.md); off also skips the per-call counting. */
  metrics: boolean;
  /** A dedicated ak_-shaped key that may read /metrics and nothing else; admin keys may too. */
  metricsKey: string;
  /** While the database is unreachable, how often grpc.health.v1 tries to reconnect. */
  healthIntervalMs: number;
  /** Behaviour signals: usage bucket (and activity-trail granularity), trust window, baseline. */
  activityBucketMs: number;
  trustWindowMs: number;
  trustBaselineWindows: number;
  trustMinBaseline: number;
  /** The revocation feed's admission limits (see feedLimits). */
  maxWatchersPerKey: number;
  feedPoolSize: number;
  feedMaxWaiting: number;
  feedCatchUpDeadlineMs: number;
  feedKeyCheckMs: number;
}

/** The feed's limits, as RevocationFeed takes them. */
export function feedLimits(c: Config) {
  return {
    maxWatchersPerKey: c.maxWatchersPerKey,
    poolSize: c.feedPoolSize,
    maxWaiting: c.feedMaxWaiting,
    catchUpDeadlineMs: c.feedCatchUpDeadlineMs,
    keyCheckMs: c.feedKeyCheckMs,
  };
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

function bool(env: NodeJS.ProcessEnv, name: string): boolean {
  const raw = env[name] ?? "";
  if (raw === "" || raw === "false" || raw === "0") return false;
  if (raw === "true" || raw === "1") return true;
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(raw)}`);
}

/**
 * AGENTID_ISSUER as clients must see it: an http(s) URL without query or fragment (RFC 8414 §2),
 * written without a trailing slash, as clients compare it character for character.
 */
function issuerUrl(raw: string): string {
  if (raw === "") return "";
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`AGENTID_ISSUER must be a URL such as https://id.example.com, got ${JSON.stringify(raw)}`);
  }
  if ((url.protocol !== "https:" && url.protocol !== "http:") || url.search || url.hash || url.username || url.password) {
    throw new ConfigError(`AGENTID_ISSUER must be an http or https URL without query, fragment or credentials, got ${JSON.stringify(raw)}`);
  }
  return url.href.replace(/\/$/, "");
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
    issuer: issuerUrl(env.AGENTID_ISSUER ?? ""),
    logLevel: env.LOG_LEVEL || "info",
    tokenDefaultTtlMs: int(env, "AGENTID_TOKEN_DEFAULT_TTL_SECONDS", 3600, 1, 31 * 86400) * 1000,
    tokenMaxTtlMs: int(env, "AGENTID_TOKEN_MAX_TTL_SECONDS", 86400, 1, 366 * 86400) * 1000,
    dbPoolSize: int(env, "AGENTID_DB_POOL_SIZE", 20, 1, 500),
    watchQueueLimit: int(env, "AGENTID_WATCH_QUEUE_LIMIT", 10_000, 2, 1_000_000),
    adminKey: env.AGENTID_ADMIN_KEY ?? "",
    proofMaxSkewMs: int(env, "AGENTID_PROOF_MAX_SKEW_SECONDS", 60, 1, 3600) * 1000,
    auditOrigin: env.AGENTID_AUDIT_ORIGIN || "agentid/audit",
    auditSigningKey: env.AGENTID_AUDIT_SIGNING_KEY ?? "",
    auditKeyFile: env.AGENTID_AUDIT_KEY_FILE ? resolve(env.AGENTID_AUDIT_KEY_FILE) : "",
    auditTilesPublic: bool(env, "AGENTID_AUDIT_TILES_PUBLIC"),
    auditCheckpointIntervalMs: int(env, "AGENTID_AUDIT_CHECKPOINT_MS", 1000, 10, 3_600_000),
    maxWatchers: int(env, "AGENTID_MAX_WATCHERS", 10_000, 1, 1_000_000),
    maxWatchersPerConnection: int(env, "AGENTID_MAX_WATCHERS_PER_CONNECTION", 100, 1, 1_000_000),
    feedCompactIntervalMs: int(env, "AGENTID_FEED_COMPACT_INTERVAL_SECONDS", 60, 0, 86400) * 1000,
    feedMinRetentionMs: int(env, "AGENTID_FEED_MIN_RETENTION_SECONDS", 3600, 0, 366 * 86400) * 1000,
    maxRequestBytes: int(env, "AGENTID_MAX_REQUEST_BYTES", 4 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    // Room for every watch stream a connection may hold, and unary calls beside them.
    http2MaxConcurrentStreams: int(
      env,
      "AGENTID_HTTP2_MAX_CONCURRENT_STREAMS",
      int(env, "AGENTID_MAX_WATCHERS_PER_CONNECTION", 100, 1, 1_000_000) + 150,
      1,
      1_000_000,
    ),
    maxHealthWatchers: int(env, "AGENTID_MAX_HEALTH_WATCHERS", 1000, 1, 1_000_000),
    handshakeTimeoutMs: int(env, "AGENTID_HANDSHAKE_TIMEOUT_SECONDS", 10, 1, 3600) * 1000,
    idleTimeoutMs: int(env, "AGENTID_IDLE_TIMEOUT_SECONDS", 300, 5, 86400) * 1000,
    authFailuresPerMinute: int(env, "AGENTID_AUTH_FAILURES_PER_MINUTE", 60, 1, 1_000_000),
    anonymousIssuePerMinute: int(env, "AGENTID_ANONYMOUS_ISSUE_PER_MINUTE", 600, 1, 1_000_000),
    metrics: (env.AGENTID_METRICS || "on") !== "off",
    metricsKey: env.AGENTID_METRICS_KEY ?? "",
    healthIntervalMs: int(env, "AGENTID_HEALTH_INTERVAL_MS", 2000, 50, 60_000),
    maxWatchersPerKey: int(env, "AGENTID_MAX_WATCHERS_PER_KEY", 1000, 1, 1_000_000),
    feedPoolSize: int(env, "AGENTID_FEED_POOL_SIZE", 3, 2, 50),
    feedMaxWaiting: int(env, "AGENTID_FEED_MAX_WAITING", 20_000, 1, 1_000_000),
    feedCatchUpDeadlineMs: int(env, "AGENTID_FEED_CATCHUP_DEADLINE_SECONDS", 30, 1, 3600) * 1000,
    // As long as the API key cache (auth.ts): a key revoked on another replica ends streams here
    // within about the time it stops authenticating new calls here.
    feedKeyCheckMs: int(env, "AGENTID_FEED_KEY_CHECK_MS", 5000, 50, 3_600_000),
    activityBucketMs: int(env, "AGENTID_ACTIVITY_BUCKET_SECONDS", 60, 1, 3600) * 1000,
    trustWindowMs: int(env, "AGENTID_TRUST_WINDOW_SECONDS", 3600, 1, 86400) * 1000,
    trustBaselineWindows: int(env, "AGENTID_TRUST_BASELINE_WINDOWS", 23, 1, 720),
    trustMinBaseline: int(env, "AGENTID_TRUST_MIN_BASELINE", 100, 1, 1_000_000_000),
  };
  if (config.metricsKey && !isWellFormedSecret(config.metricsKey, API_KEY_PREFIX)) {
    throw new ConfigError("AGENTID_METRICS_KEY must be an ak_ key with a valid checksum (make one with `agentid key generate`)");
  }
  if (config.adminKey && !isWellFormedSecret(config.adminKey, API_KEY_PREFIX)) {
    // The value itself is a secret: never echo it.
    throw new ConfigError("AGENTID_ADMIN_KEY must be an ak_ key with a valid checksum (make one with `agentid key generate`)");
  }
  // A signed-note key name: printable, no spaces or "+" (the verifier key's separator).
  if (!/^[\x21-\x2a\x2c-\x7e]{1,128}$/.test(config.auditOrigin)) {
    throw new ConfigError("AGENTID_AUDIT_ORIGIN must be 1 to 128 printable characters without spaces or +");
  }
  if (config.tokenDefaultTtlMs > config.tokenMaxTtlMs) {
    throw new ConfigError("AGENTID_TOKEN_DEFAULT_TTL_SECONDS must not exceed AGENTID_TOKEN_MAX_TTL_SECONDS");
  }
  return config;
}
