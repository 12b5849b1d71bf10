import { Kysely, Migrator, PostgresDialect } from "kysely";
import { createHash } from "node:crypto";
import pg from "pg";
import type { Database, Db } from "./database.js";
import { migrationProvider } from "./migrations/index.js";

export interface OpenedDatabase {
  db: Db;
  pool: pg.Pool;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable DATABASE_URL)";
  }
}

export class DatabaseUnreachableError extends Error {}

// SQLSTATE classes 08 (connection exception) and 57P (operator intervention: shutdown, restart).
const UNAVAILABLE_STATE = /^(08|57P0[1-3])/;
const UNAVAILABLE_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND"]);

/** True for errors that mean "the database is away" (restart, failover, network), not a bug. */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && (UNAVAILABLE_STATE.test(code) || UNAVAILABLE_ERRNO.has(code))) return true;
  // pg reports a connection dropped mid-query, or a pool timeout, with a bare message.
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(
    err.message,
  );
}

/** A pool of the server's own connections (the main pool, the feed's). */
export function openPool(url: string, max: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: 10_000,
    // Every statement the server runs is short, and JIT-compiling one costs 100s of ms: Debian's
    // and most managed PostgreSQL have it on, and a misestimated plan once made the feed's 1 ms
    // log read take 500 ms (issue 28). A SET rather than a startup option, which poolers such as
    // PgBouncer refuse; a server without the setting (before 11) just refuses it.
    onConnect: (client) => client.query("set jit = off").then(
      () => {},
      () => {},
    ),
  });
  // An idle client losing its connection (a server restart) must not crash the process.
  pool.on("error", () => {});
  // Nor may a checked-out one (pg-pool listens only on idle clients): the query in flight gets
  // the error, and the pool drops the client when it is released.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}

/** Opens a pool, checks that the server answers, and brings the schema up to date. */
export async function openDatabase(url: string, poolSize = 20): Promise<OpenedDatabase> {
  const pool = openPool(url, poolSize);
  try {
    await pool.query("select 1");
  } catch (err) {
    await pool.end().catch(() => {});
    throw new DatabaseUnreachableError(
      `cannot reach PostgreSQL at ${redactUrl(url)}: ${(err as Error).message || String(err)}`,
    );
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: preparing(pool) }) });
  await migrate(db);
  return { db, pool };
}

/**
 * Statements whose text starts with this are prepared once per connection and then only bound
 * and executed (PostgreSQL keeps their plans): for the hot write path, where parsing and
 * planning a statement cost about as much as running it.
 */
export const PREPARED = "/* prepared */ ";

/** The pool as Kysely sees it: its clients run PREPARED statements as named ones. */
function preparing(pool: pg.Pool): pg.Pool {
  const clients = new WeakMap<pg.PoolClient, pg.PoolClient>();
  const wrap = (client: pg.PoolClient): pg.PoolClient => {
    let w = clients.get(client);
    if (!w) {
      w = Object.create(client) as pg.PoolClient;
      w.query = ((text: unknown, values?: unknown[]) =>
        typeof text === "string" && text.startsWith(PREPARED)
          ? client.query({ name: `agentid_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`, text, values })
          : client.query(text as string, values)) as pg.PoolClient["query"];
      w.release = (err?: Error | boolean) => client.release(err);
      clients.set(client, w);
    }
    return w;
  };
  return { connect: async () => wrap(await pool.connect()), end: () => pool.end() } as unknown as pg.Pool;
}

export async function migrate(db: Db): Promise<void> {
  // Number ranges are handed out to parallel branches, so a migration can be released after a
  // higher-numbered one (0010 after 0015): run it anyway, rather than refuse a data folder.
  const { error, results } = await new Migrator({ db, provider: migrationProvider, allowUnorderedMigrations: true }).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`migration ${failed} failed: ${(error as Error).message}`);
  }
}
