// A database opened the way the server opens it, with the sequencer numbering both logs: for
// benchmarks of the write path at the domain level.
import pg from "pg";
import pino from "pino";
import { sql } from "kysely";
import type { Db } from "../../src/store/database.js";
import { openDatabase } from "../../src/store/open.js";
import { Sequencer } from "../../src/store/sequencer.js";
import { revocationLog } from "../../src/store/revocations.js";
import { auditLogSequence } from "../../src/store/audit.js";
import { startOwnPostgres } from "./cluster.js";

export interface SequencedDb {
  db: Db;
  sequencer: Sequencer;
  /** A plain single-row INSERT into a table of its own: the baseline of the write-path targets. */
  insert(): Promise<unknown>;
  close(): Promise<void>;
}

export async function openSequencedDb(poolSize: number): Promise<SequencedDb> {
  const own = process.env.DATABASE_URL ? undefined : await startOwnPostgres();
  const url = process.env.DATABASE_URL ?? own!.url;
  const { db } = await openDatabase(url, poolSize);
  const sequencer = new Sequencer({ db, databaseUrl: url, logger: pino({ level: "warn" }), logs: [revocationLog, auditLogSequence] });
  await sequencer.start();
  await sql`create table if not exists bench_insert (id text primary key, payload bytea not null, at timestamptz not null default now())`.execute(db);
  const { randomBytes } = await import("node:crypto");
  return {
    db,
    sequencer,
    insert: () => sql`insert into bench_insert (id, payload) values (${randomBytes(16).toString("hex")}, ${randomBytes(32)})`.execute(db),
    async close() {
      await sequencer.close();
      await db.destroy();
      await own?.destroy();
    },
  };
}

/**
 * Appends `n` token revocations straight to the log (as committed, numbered rows) to give a
 * catch-up something to read; returns the head. Faster than n Revoke calls, and the feed reads
 * only the table, so it cannot tell the difference.
 */
export async function appendLogRows(databaseUrl: string, n: number): Promise<bigint> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    // Appended as a revoker would (to the inbox), then numbered by the sequencer's function.
    await c.query(
      `insert into revocation_inbox (token_id, agent_id, reason, revoked_by, expires_at)
       select 'tok_seed' || g, 'agt_seed', 'seeded', 'seed', now() + interval '1 hour' from generate_series(1, $1::int) g`,
      [n],
    );
    // The sequencer numbers them (a pass may skip while another holds the head: try again).
    for (;;) {
      await c.query("select * from agentid_sequence_revocations(100000, '{}'::bigint[])");
      const { rows } = await c.query("select count(*)::int as n from revocation_inbox");
      if (rows[0].n === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const { rows } = await c.query("select max(revision) as head from revocations");
    return BigInt(rows[0].head);
  } finally {
    await c.end();
  }
}
