// A database opened the way the server opens it, with the sequencer numbering both logs: for
// benchmarks of the write path at the domain level.
import pino from "pino";
import { sql } from "kysely";
import type { Db } from "../../src/store/database.js";
import { openDatabase } from "../../src/store/open.js";
import { CommitSignals, Sequencer } from "../../src/store/sequencer.js";
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
  const signals = new CommitSignals(["audit_inbox", "revocation_inbox"]);
  const { db } = await openDatabase(url, poolSize, signals);
  const sequencer = new Sequencer({ db, databaseUrl: url, logger: pino({ level: "warn" }), logs: [revocationLog, auditLogSequence] });
  signals.onCommit = (table) => sequencer.wake(table === "audit_inbox" ? "audit" : "revocations");
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
