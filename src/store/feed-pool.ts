import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import type { Database, Db } from "./database.js";

/**
 * A small pool of the feed's own (log tailing, catch-up pages, stream key checks, compaction),
 * so that however many watchers subscribe at once, Revoke, Issue and Introspect never wait for a
 * connection behind them.
 */
export function openFeedPool(url: string, size: number): { db: Db; close(): Promise<void> } {
  const pool = new pg.Pool({ connectionString: url, max: size, connectionTimeoutMillis: 10_000 });
  // As in openDatabase: a lost connection (a server restart) fails the query in flight, never the process.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, close: () => db.destroy() };
}
