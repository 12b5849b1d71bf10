import { Kysely, PostgresDialect } from "kysely";
import type { Database, Db } from "./database.js";
import { openPool } from "./open.js";

/**
 * A small pool of the feed's own (log tailing, catch-up pages, stream key checks, compaction),
 * so that however many watchers subscribe at once, Revoke, Issue and Introspect never wait for a
 * connection behind them.
 */
export function openFeedPool(url: string, size: number): { db: Db; close(): Promise<void> } {
  const pool = openPool(url, size);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, close: () => db.destroy() };
}
