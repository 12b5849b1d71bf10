// Revocations per second with no watchers against a bare single-row INSERT commit rate at the
// same concurrency, in one run, one process, one pool (issue 11: >= 0.25x).
//
//   npx tsx bench/revoke-throughput.ts
//   BENCH_CONCURRENCY=32 BENCH_SLICES=30 npx tsx bench/revoke-throughput.ts
//
// At the domain level (no RPC): each revoke is the whole write path a Revoke call takes, one
// round trip that commits the event and its log entry, then the wait until the sequencer has
// numbered it (the revision the call returns). Each revokes a token of its own. Prints a JSON
// line last, for bench/run.ts.
import { randomBytes } from "node:crypto";
import { sql } from "kysely";
import { registerAgent } from "../src/domain/agents.js";
import { revoke } from "../src/domain/revocation.js";
import { alternate, alternateOptions } from "./lib/alternate.js";
import { openSequencedDb } from "./lib/sequenced-db.js";

const o = alternateOptions({ concurrency: 32, sliceMs: 250, slices: 16 });
const s = await openSequencedDb(o.concurrency + 4);
try {
  const agent = await registerAgent(s.db, s.sequencer, { name: "bench", publicKey: randomBytes(32), labels: {}, allowedScopes: [], allowedAudiences: [] }, "bench");
  // Tokens to revoke, made in bulk (their issuance is not what is measured).
  const stock = 200_000;
  await sql`
    insert into tokens (id, token_hash, agent_id, scopes, audiences, expires_at)
    select 'tok_bench' || g, sha256(('bench' || g)::bytea), ${agent.id}, '{}', '{}', now() + interval '1 hour'
    from generate_series(1, ${stock}) g`.execute(s.db);
  let next = 0;
  const revokeOne = async () => {
    const n = ++next;
    if (n > stock) throw new Error("out of tokens: lower BENCH_SLICES");
    return revoke(s.db, s.sequencer, { tokenId: `tok_bench${n}` }, "bench", "bench");
  };
  console.log(`Revocation throughput, no watchers, concurrency ${o.concurrency}, ${o.slices} alternating slices of ${o.sliceMs} ms per side`);
  await alternate({ insert: s.insert, revoke: revokeOne }, { ...o, slices: 2 });
  const r = await alternate({ insert: s.insert, revoke: revokeOne }, o);
  console.log(`  single INSERT  ${r.insert.toFixed(0).padStart(7)} /s`);
  console.log(`  Revoke         ${r.revoke.toFixed(0).padStart(7)} /s (committed and numbered)`);
  console.log(`Revoke / single-row INSERT: ${(r.revoke / r.insert).toFixed(2)}x (target >= 0.25x)`);
  console.log(JSON.stringify({ revokePerSecond: r.revoke, insertPerSecond: r.insert }));
} finally {
  await s.close();
}
