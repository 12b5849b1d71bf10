import { randomBytes } from "node:crypto";
import pino from "pino";
import { sql } from "kysely";
import { openDatabase } from "../../src/store/open.js";
import { CommitSignals, Sequencer } from "../../src/store/sequencer.js";
import { revocationLog } from "../../src/store/revocations.js";
import { auditLogSequence } from "../../src/store/audit.js";
import { registerAgent } from "../../src/domain/agents.js";
import { issueToken } from "../../src/domain/tokens.js";
import { auditRow } from "../../src/audit/append.js";
import { hashSecret, newToken, newTokenId } from "../../src/domain/ids.js";
import { startOwnPostgres } from "../lib/cluster.js";
const C = Number(process.env.C ?? 16), SLICE = 250, SLICES = Number(process.env.SLICES ?? 12);
async function slice(op: (i: number) => Promise<unknown>): Promise<[number, number]> {
  let done = 0; const end = Date.now() + SLICE; const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: C }, async (_, w) => { for (let i = 0; Date.now() < end; i++) { await op(w * 1e6 + i); done++; } }));
  return [done, Number(process.hrtime.bigint() - t0) / 1e9];
}
const own = await startOwnPostgres();
const signals = new CommitSignals(["audit_inbox", "revocation_inbox"]);
const { db, pool } = await openDatabase(own.url, C + 4, signals);
const seq = new Sequencer({ db, databaseUrl: own.url, logger: pino({ level: "warn" }), logs: [revocationLog, auditLogSequence] });
let wakeOn = true;
signals.onCommit = (t) => { if (wakeOn) seq.wake(t === "audit_inbox" ? "audit" : "revocations"); };
await seq.start();
await sql`create table if not exists bench_insert (id text primary key, payload bytea not null, at timestamptz not null default now())`.execute(db);
const agents = await Promise.all(Array.from({ length: C }, (_, i) => registerAgent(db, { name: `b${i}`, publicKey: randomBytes(32), labels: {}, allowedScopes: [] }, "bench")));
const req = (i: number) => ({ agentId: agents[i % C]!.id, scopes: ["read"], audiences: ["api"], ttlMs: 3600000, selfIssued: false });
const TEXT = `with token as (
      insert into tokens (id, token_hash, agent_id, scopes, audiences, issued_at, expires_at)
      select $1, $2, a.id, $3::text[], $4::text[], $5, $6
      from agents a where a.id = $7 and a.status = 'ACTIVE'
        and ($3::text[] <@ a.allowed_scopes or (not $8 and cardinality(a.allowed_scopes) = 0))
        and GATE
      returning id
    )
    AUDIT`;
const AUD = `insert into audit_inbox (kind, agent_id, token_id, actor, reason, details, leaf_prefix, leaf_suffix)
    select $9, $10, token.id, $11, $12, $13::jsonb, $14, $15 from token returning token_id as id`;
const NOAUD = `select id from token where $9::text is not null and $10::text is not null and $11::text is not null and $12::text is not null and $13::text is not null and $14::bytea is not null and $15::bytea is not null`;
function params(i: number) {
  const r = req(i); const now = new Date(); const id = newTokenId();
  const a = auditRow({ kind: "token.issued", agentId: r.agentId, tokenId: id, actor: "bench", details: { scopes: r.scopes, audiences: r.audiences, expires_at: now.toISOString() } });
  return [id, hashSecret(newToken()), r.scopes, r.audiences, now, new Date(now.getTime() + r.ttlMs), r.agentId, false, a.kind, a.agentId, a.actor, a.reason, a.detailsJson, a.leafPrefix, a.leafSuffix];
}
function params1() { return params(0); }
const q = (name: string, text: string) => (i: number) => pool.query({ name, text, values: params(i) });
const KS = TEXT.replace("and GATE", "").replace("AUDIT", AUD).replace("from agents a where", "from (select * from agents a where").replace("cardinality(a.allowed_scopes) = 0))\n", "cardinality(a.allowed_scopes) = 0)) for key share) a\n");
const GATE = TEXT.replace("GATE", "agentid_issue_gate(a.id)").replace("AUDIT", AUD);
const NOG = TEXT.replace("GATE", "true").replace("AUDIT", AUD);
const sides: Record<string, (i: number) => Promise<unknown>> = {
  insert: async () => pool.query("insert into bench_insert (id, payload) values ($1, $2)", [randomBytes(16).toString("hex"), randomBytes(32)]),
  gate: (i) => pool.query({ name: "g", text: GATE, values: params(i) }),
  keyShare: (i) => pool.query({ name: "ks", text: KS, values: params(i) }),
  noGate: (i) => pool.query({ name: "ng", text: NOG, values: params(i) }),
  gate1: (i) => pool.query({ name: "g", text: GATE, values: params(0) }),
  keyShare1: (i) => pool.query({ name: "ks", text: KS, values: params(0) }),
  noGate1: (i) => pool.query({ name: "ng", text: NOG, values: params(0) }),
};
const tot: Record<string, [number, number]> = {};
for (let n = 0; n < SLICES; n++) for (const [k, op] of Object.entries(sides)) { const [d, s] = await slice(op); const t = (tot[k] ??= [0, 0]); t[0] += d; t[1] += s; }
const base = tot.insert![0] / tot.insert![1];
for (const [k, [d, s]] of Object.entries(tot)) console.log(k.padEnd(12), (d / s).toFixed(0).padStart(8), ((d / s) / base).toFixed(2));
await seq.close(); await db.destroy(); await own.destroy();
