import { join } from "node:path";
import pino, { type Logger } from "pino";
import type { Db } from "../store/database.js";
import { openDatabase } from "../store/open.js";
import { startEmbeddedPostgres } from "../store/embedded.js";
import { RevocationHub } from "../feed/hub.js";
import { AuditLog } from "../audit/log.js";
import type { Config } from "./config.js";
import { Authenticator } from "./auth.js";
import { TokenLookup } from "../domain/token-lookup.js";
import { ActivityTracker } from "../domain/activity.js";
import { bootstrapAdminKey } from "../domain/keys.js";

/** Everything a handler needs, built once from config. No module-level singletons. */
export interface AppContext {
  config: Config;
  db: Db;
  logger: Logger;
  feed: RevocationHub;
  auth: Authenticator;
  /** Introspect's batched token reads. */
  tokenLookup: TokenLookup;
  activity: ActivityTracker;
  /** The admin key this start created, to be shown once; undefined when one existed or was given. */
  createdAdminKey?: string;
  /** The transparency log's tree and checkpoint signer. */
  audit: AuditLog;
  close(): Promise<void>;
}

export interface ContextOverrides {
  logger?: Logger;
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
    const { db } = await openDatabase(databaseUrl, config.dbPoolSize);
    const createdAdminKey = await bootstrapAdminKey(db, config.adminKey);
    const audit = await AuditLog.open({
      db,
      logger,
      origin: config.auditOrigin,
      signingKey: config.auditSigningKey,
      keyFile: config.auditKeyFile || join(config.dataDir, "audit-signing-key.pem"),
      recordFile: join(config.dataDir, "audit-checkpoint"),
      checkpointIntervalMs: config.auditCheckpointIntervalMs,
    }).catch(async (err: unknown) => {
      await db.destroy();
      throw err;
    });
    const feed = new RevocationHub({
      db,
      databaseUrl,
      logger,
      queueLimit: config.watchQueueLimit,
      maxWatchers: config.maxWatchers,
      maxWatchersPerConnection: config.maxWatchersPerConnection,
      compactIntervalMs: config.feedCompactIntervalMs,
      minRetentionMs: config.feedMinRetentionMs,
    });
    await feed.start();
    const activity = new ActivityTracker(db, logger);
    activity.start();
    return {
      config,
      db,
      logger,
      feed,
      auth: new Authenticator(db),
      tokenLookup: new TokenLookup(db),
      activity,
      createdAdminKey,
      audit,
      async close() {
        await feed.close();
        await activity.close();
        await audit.close();
        await db.destroy();
        await stopEmbedded?.();
      },
    };
  } catch (err) {
    await stopEmbedded?.();
    throw err;
  }
}
