import { join } from "node:path";
import pino, { type Logger } from "pino";
import type { Db } from "../store/database.js";
import { openDatabase } from "../store/open.js";
import { startEmbeddedPostgres } from "../store/embedded.js";
import { RevocationFeed } from "../feed/feed.js";
import { feedFrames } from "./messages.js";
import { AuditLog } from "../audit/log.js";
import { Sequencer } from "../store/sequencer.js";
import { revocationLog } from "../store/revocations.js";
import { auditLogSequence } from "../store/audit.js";
import { feedLimits, type Config } from "./config.js";
import { Authenticator } from "./auth.js";
import { TokenLookup } from "../domain/token-lookup.js";
import { TokenIssuer } from "../domain/tokens.js";
import { ActivityTracker, DEFAULT_SIGNALS } from "../domain/activity.js";
import { bootstrapAdminKey } from "../domain/keys.js";
import { keepAdminKey } from "./bootstrap-key.js";
import { Metrics } from "./metrics.js";

/** Everything a handler needs, built once from config. No module-level singletons. */
export interface AppContext {
  config: Config;
  db: Db;
  logger: Logger;
  feed: RevocationFeed;
  auth: Authenticator;
  /** Introspect's batched token reads. */
  tokenLookup: TokenLookup;
  /** Issue's batched writes. */
  issuer: TokenIssuer;
  activity: ActivityTracker;
  /** The admin key this start created, to be shown once; undefined when one existed or was given. */
  createdAdminKey?: string;
  /** The transparency log's tree and checkpoint signer. */
  audit: AuditLog;
  /** The PostgreSQL in use (DATABASE_URL, or the embedded server's), for connections of their own. */
  databaseUrl: string;
  /** Prometheus metrics; undefined when AGENTID_METRICS=off. */
  metrics?: Metrics;
  /** Numbers both logs (revocations, transparency log) for this replica. */
  sequencer: Sequencer;
  close(): Promise<void>;
}

export interface ContextOverrides {
  logger?: Logger;
  /** The sequencer's safety tick (tests: a long one, so that only writers' own wakes number rows). */
  sequencerTickMs?: number;
}

export async function createAppContext(config: Config, overrides: ContextOverrides = {}): Promise<AppContext> {
  const logger = overrides.logger ?? pino({ level: config.logLevel, base: { service: "agentid" } });
  let databaseUrl = config.databaseUrl;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (!databaseUrl) {
    logger.info({ dataDir: config.dataDir, port: config.embeddedPgPort }, "starting embedded PostgreSQL");
    const pg = await startEmbeddedPostgres({
      dataDir: config.dataDir,
      port: config.embeddedPgPort,
      log: (line) => logger.debug({ postgres: line }),
    });
    databaseUrl = pg.url;
    stopEmbedded = pg.stop;
  }
  try {
    const { db, pool } = await openDatabase(databaseUrl, config.dbPoolSize);
    const sequencer = new Sequencer({ db, databaseUrl, logger, logs: [revocationLog, auditLogSequence], tickMs: overrides.sequencerTickMs });
    await sequencer.start().catch(async (err: unknown) => {
      await sequencer.close();
      await db.destroy();
      throw err;
    });
    const createdAdminKey = await bootstrapAdminKey(db, sequencer, config.adminKey, (secret) => keepAdminKey(config.dataDir, secret));
    const audit = await AuditLog.open({
      db,
      logger,
      origin: config.auditOrigin,
      signingKey: config.auditSigningKey,
      keyFile: config.auditKeyFile || join(config.dataDir, "audit-signing-key.pem"),
      recordFile: join(config.dataDir, "audit-checkpoint"),
      checkpointIntervalMs: config.auditCheckpointIntervalMs,
      sequencer,
    }).catch(async (err: unknown) => {
      await sequencer.close();
      await db.destroy();
      throw err;
    });
    const feed = new RevocationFeed({
      databaseUrl,
      spine: sequencer,
      logger,
      encoder: feedFrames,
      queueLimit: config.watchQueueLimit,
      maxWatchers: config.maxWatchers,
      maxWatchersPerConnection: config.maxWatchersPerConnection,
      compactIntervalMs: config.feedCompactIntervalMs,
      minRetentionMs: config.feedMinRetentionMs,
      ...feedLimits(config),
    });
    await feed.start();
    const activity = new ActivityTracker(db, logger, sequencer, {
      ...DEFAULT_SIGNALS,
      bucketMs: config.activityBucketMs,
      windowMs: config.trustWindowMs,
      baselineWindows: config.trustBaselineWindows,
      minBaseline: config.trustMinBaseline,
    });
    activity.start();
    const metrics = config.metrics ? new Metrics({ db, pool, feed, audit }) : undefined;
    return {
      config,
      db,
      logger,
      feed,
      auth: new Authenticator(db, {
        failuresPerMinute: config.authFailuresPerMinute,
        anonymousPerMinute: config.anonymousIssuePerMinute,
      }),
      tokenLookup: new TokenLookup(db),
      issuer: new TokenIssuer(db, sequencer),
      activity,
      createdAdminKey,
      audit,
      databaseUrl,
      metrics,
      sequencer,
      async close() {
        metrics?.close();
        await feed.close();
        await activity.close();
        await audit.close();
        await sequencer.close();
        await db.destroy();
        await stopEmbedded?.();
      },
    };
  } catch (err) {
    await stopEmbedded?.();
    throw err;
  }
}
