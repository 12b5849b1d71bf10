// What reading an entry's salt back costs the audit sequencer (migration 0025-entry-salt), per
// entry, beside the sha256 of its leaf that the sequencer computes anyway: the shipped fixed-place
// byte comparison against a regex over the leaf's first half as text. Rounds alternate the cases.
// Run: npx tsx bench/audit-salt.ts
import pg from "pg";
import { startOwnPostgres } from "./lib/cluster.js";

const ROWS = 20_000;
const SALT = "0123456789abcdef0123456789abcdef";
const cases: Record<string, string> = {
  "sha256 of the leaf (baseline)": "select count(sha256(p)) from t",
  "fixed-place bytes (shipped)": `select count(case when length(p) > 48 and substring(p from length(p) - 47 for 8) = convert_to('"salt":"', 'UTF8')
      then convert_from(substring(p from length(p) - 39 for 32), 'UTF8') else '' end) from t`,
  "regex over the text": `select count(coalesce(substring(convert_from(substring(p from 2), 'UTF8') from '"salt":"([0-9a-f]{32})","seq":$'), '')) from t`,
};

const own = await startOwnPostgres();
const c = new pg.Client({ connectionString: own.url });
await c.connect();
try {
  for (const details of [200, 16_000]) {
    const half = `{"actor":"key:key_x","agent_id":"agt_x","details":{"d":"${"x".repeat(details)}"},"kind":"token.issued","reason":"","salt":"${SALT}","seq":`;
    await c.query("drop table if exists t");
    await c.query(`create table t as select '\\x00'::bytea || convert_to($1, 'UTF8') as p from generate_series(1, ${ROWS})`, [half]);
    const us: Record<string, number[]> = {};
    for (let round = 0; round < 5; round++) {
      for (const [name, q] of Object.entries(cases)) {
        const t = performance.now();
        await c.query(q);
        (us[name] ??= []).push(((performance.now() - t) * 1000) / ROWS);
      }
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const base = median(us["sha256 of the leaf (baseline)"]!);
    console.log(`details of ${details} characters, ${ROWS} entries, median of 5 rounds:`);
    for (const [name, xs] of Object.entries(us)) console.log(`  ${name.padEnd(32)} ${median(xs).toFixed(2)} µs/entry  ${(median(xs) / base).toFixed(2)}x the sha256`);
  }
} finally {
  await c.end();
  await own.destroy();
}
