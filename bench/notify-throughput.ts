// Does NOTIFY inside the revoke transaction limit revocation throughput?
// PostgreSQL takes a global lock at commit for transactions that notified, so their commits are
// serialised. Revokes are already serialised by log_head's row lock (that is what makes revisions
// gap-free and commit-ordered), so the question is whether NOTIFY costs anything on top.
// Run: npx tsx bench/notify-throughput.ts [seconds-per-case]
import pg from "pg";
import { openDatabase } from "../src/store/open.js";
import { startOwnPostgres } from "./lib/cluster.js";

const seconds = Number(process.argv[2] ?? 3);
type Mode = "log_head + notify in tx, own statement" | "log_head + notify folded into insert (shipped)" | "log_head, no notify" | "log_head, notify after commit" | "no log_head, notify in tx" | "no log_head, no notify";
const modes: Mode[] = [
  "log_head + notify in tx, own statement",
  "log_head + notify folded into insert (shipped)",
  "log_head, no notify",
  "log_head, notify after commit",
  "no log_head, notify in tx",
  "no log_head, no notify",
];

async function run(url: string, mode: Mode, writers: number): Promise<number> {
  const clients = await Promise.all(
    Array.from({ length: writers }, async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  let n = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    clients.map(async (c) => {
      while (Date.now() < end) {
        await c.query("begin");
        const rev =
          mode.startsWith("no log_head")
            ? (await c.query("select nextval('bench_seq') as r")).rows[0].r
            : (await c.query("update log_head set revision = revision + 1 returning revision as r")).rows[0].r;
        if (mode.includes("folded")) {
          await c.query(
            "with i as (insert into revocations (revision, token_id, agent_id, reason, revoked_by) values ($1, 'tok_x', 'agt_x', 'bench', 'bench') returning revision) select pg_notify('agentid_revocations', revision::text) from i",
            [rev],
          );
        } else {
          await c.query(
            "insert into revocations (revision, token_id, agent_id, reason, revoked_by) values ($1, 'tok_x', 'agt_x', 'bench', 'bench')",
            [rev],
          );
        }
        if (mode.endsWith("notify in tx") || mode.includes("own statement")) await c.query("select pg_notify('agentid_revocations', $1)", [String(rev)]);
        await c.query("commit");
        if (mode.endsWith("after commit")) await c.query("select pg_notify('agentid_revocations', $1)", [String(rev)]);
        n++;
      }
    }),
  );
  await Promise.all(clients.map((c) => c.end()));
  return n / seconds;
}

const pgServer = await startOwnPostgres();
try {
  const { db, pool } = await openDatabase(pgServer.url, 4);
  await pool.query("create sequence bench_seq start 1000000000");
  // A listener, as every replica has one: notifications are queued for it.
  const listener = new pg.Client({ connectionString: pgServer.url });
  await listener.connect();
  await listener.query("listen agentid_revocations");
  let received = 0;
  listener.on("notification", () => received++);
  const settings = await pool.query("select name, setting from pg_settings where name in ('fsync','synchronous_commit')");
  console.log(`PostgreSQL ${settings.rows.map((r) => `${r.name}=${r.setting}`).join(" ")}; ${seconds}s per case`);
  console.log("writers | " + modes.join(" | "));
  for (const writers of [1, 4, 16, 32]) {
    const row: string[] = [];
    for (const mode of modes) row.push(`${Math.round(await run(pgServer.url, mode, writers))}/s`);
    console.log(`${String(writers).padStart(7)} | ${row.join(" | ")}`);
  }
  await listener.end();
  await db.destroy();
  console.log(`(listener received ${received} notifications)`);
} finally {
  await pgServer.destroy();
}
