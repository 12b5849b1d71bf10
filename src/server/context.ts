import pino, { type Logger } from "pino";
import type { Db } from "../store/database.js";
import { openDatabase } from "../store/open.js";
import { startEmbeddedPostgres } from "../store/embedded.js";
import { RevocationHub } from "../feed/hub.js";
import type { Config } from "./config.js";

/** Everything a handler needs, built once from config. No module-level singletons. */
export interface AppContext {
  config: Config;
  db: Db;
  logger: Logger;
  feed: RevocationHub;
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
    return {
      config,
      db,
      logger,
      feed,
      async close() {
        await feed.close();
        await db.destroy();
        await stopEmbedded?.();
      },
    };
  } catch (err) {
    await stopEmbedded?.();
    throw err;
  }
}
