// Issuance (a token and its transparency-log entry, numbered by the sequencer) against a bare
// single-row INSERT at the same concurrency, in one run, one process, one pool (issue 12 item 5).
//
//   npx tsx bench/audit-append.ts            (embedded PostgreSQL in a temp folder)
//   DATABASE_URL=postgres://... npx tsx bench/audit-append.ts
//   BENCH_CONCURRENCY=32 BENCH_SLICES=30 npx tsx bench/audit-append.ts
//
// At the domain level (no RPC), so what is compared is the database work: Issue's one statement
// (token rows, log inbox rows, the agent's issuance gate; concurrent requests share a statement,
// as in the server) plus its share of the sequencer's batches,
// against one row with one index. "token only" (the token INSERT without its log entry) is shown
// for context. Prints a JSON line last, for bench/run.ts.
import { randomBytes } from "node:crypto";
import { sql } from "kysely";
import { registerAgent } from "../src/domain/agents.js";
import { TokenIssuer } from "../src/domain/tokens.js";
import { hashSecret, newToken, newTokenId } from "../src/domain/ids.js";
import { alternate, alternateOptions } from "./lib/alternate.js";
import { openSequencedDb } from "./lib/sequenced-db.js";

const o = alternateOptions({ concurrency: 32, sliceMs: 250, slices: 16 });
const s = await openSequencedDb(o.concurrency + 4);
try {
  const agents = await Promise.all(
    Array.from({ length: o.concurrency }, (_, i) =>
      registerAgent(s.db, s.sequencer, { name: `bench-${i}`, publicKey: randomBytes(32), labels: {}, allowedScopes: ["read"], allowedAudiences: ["api"] }, "bench"),
    ),
  );
  const req = (i: number) => ({ agentId: agents[i % agents.length]!.id, scopes: ["read"], audiences: ["api"], ttlMs: 3_600_000 });
  const tokenOnly = (i: number) => {
    const r = req(i);
    const now = new Date();
    return sql`
      insert into tokens (id, token_hash, agent_id, scopes, audiences, issued_at, expires_at)
      select ${newTokenId()}, ${hashSecret(newToken())}, a.id, ${r.scopes}::text[], ${r.audiences}::text[], ${now}, ${new Date(now.getTime() + r.ttlMs)}
      from agents a where a.id = ${r.agentId} and a.status = 'ACTIVE'`.execute(s.db);
  };
  // As the server issues: concurrent requests share a statement, each its own token and entry.
  const issuer = new TokenIssuer(s.db, s.sequencer);
  const issue = (i: number) => issuer.issue(req(i), "bench");
  console.log(`Issue throughput, concurrency ${o.concurrency}, ${o.slices} alternating slices of ${o.sliceMs} ms per side`);
  // Warm both paths (JIT, pool connections, table and index pages) before anything counts.
  await alternate({ insert: s.insert, issue }, { ...o, slices: 2 });
  const r = await alternate({ insert: s.insert, tokenOnly, issue }, o);
  // The sequencer ran throughout, so its numbering is in the figure; it catches up here.
  await s.sequencer.flush("audit");
  console.log(`  single INSERT  ${r.insert.toFixed(0).padStart(7)} /s`);
  console.log(`  token only     ${r.tokenOnly.toFixed(0).padStart(7)} /s`);
  console.log(`  Issue          ${r.issue.toFixed(0).padStart(7)} /s (token and its numbered log entry)`);
  console.log(`Issue / single-row INSERT: ${(r.issue / r.insert).toFixed(2)}x (target >= 0.6x)`);
  console.log(JSON.stringify({ issuePerSecond: r.issue, insertPerSecond: r.insert, tokenOnlyPerSecond: r.tokenOnly }));
} finally {
  await s.close();
}
