import { sql } from "kysely";
import type { Db, Tx } from "./database.js";

export type AgentStatus = "ACTIVE" | "REVOKED";

export interface AgentRecord {
  id: string;
  /** Insertion order; the pagination key. */
  seq: bigint;
  name: string;
  publicKey: Uint8Array;
  labels: Record<string, string>;
  status: AgentStatus;
  createdAt: Date;
  revokedAt: Date | null;
  revokedReason: string | null;
  revokedBy: string | null;
  revokedRevision: bigint | null;
  allowedScopes: string[];
  allowedAudiences: string[];
  /** The deployment's id (one per database), which agents sign into their proofs. */
  deploymentId: string;
}

const columns = [
  "id",
  "seq",
  "name",
  "public_key",
  "labels",
  "status",
  "created_at",
  "revoked_at",
  "revoked_reason",
  "revoked_by",
  "revoked_revision",
  "allowed_scopes",
  "allowed_audiences",
  sql<string>`(select id from deployment)`.as("deployment_id"),
] as const;

type Row = {
  id: string;
  seq: string;
  name: string;
  public_key: Buffer;
  labels: Record<string, string>;
  status: AgentStatus;
  created_at: Date;
  revoked_at: Date | null;
  revoked_reason: string | null;
  revoked_by: string | null;
  revoked_revision: string | null;
  allowed_scopes: string[];
  allowed_audiences: string[];
  deployment_id: string;
};

function toRecord(r: Row): AgentRecord {
  return {
    id: r.id,
    seq: BigInt(r.seq),
    name: r.name,
    publicKey: new Uint8Array(r.public_key),
    labels: r.labels,
    status: r.status,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
    revokedReason: r.revoked_reason,
    revokedBy: r.revoked_by,
    revokedRevision: r.revoked_revision === null ? null : BigInt(r.revoked_revision),
    allowedScopes: r.allowed_scopes,
    allowedAudiences: r.allowed_audiences,
    deploymentId: r.deployment_id,
  };
}

export async function insertAgent(
  db: Db,
  a: { id: string; name: string; publicKey: Uint8Array; labels: Record<string, string>; allowedScopes: string[]; allowedAudiences: string[] },
): Promise<AgentRecord> {
  const row = await db
    .insertInto("agents")
    .values({
      id: a.id,
      name: a.name,
      public_key: Buffer.from(a.publicKey),
      labels: JSON.stringify(a.labels),
      status: "ACTIVE",
      allowed_scopes: a.allowedScopes,
      allowed_audiences: a.allowedAudiences,
    })
    .returning(columns)
    .executeTakeFirstOrThrow();
  return toRecord(row);
}

export async function findAgent(db: Db | Tx, id: string): Promise<AgentRecord | undefined> {
  const row = await db.selectFrom("agents").select(columns).where("id", "=", id).executeTakeFirst();
  return row && toRecord(row);
}

/** Newest first; keyset pagination on seq. */
export async function listAgents(
  db: Db,
  q: { limit: number; status?: AgentStatus; beforeSeq?: bigint; text?: string; labels?: Record<string, string> },
): Promise<AgentRecord[]> {
  let query = db.selectFrom("agents").select(columns);
  if (q.status) query = query.where("status", "=", q.status);
  if (q.text) {
    const pattern = `%${q.text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    query = query.where((eb) => eb.or([eb("name", "ilike", pattern), eb("id", "ilike", pattern)]));
  }
  if (q.labels && Object.keys(q.labels).length > 0) {
    query = query.where(sql<boolean>`labels @> ${JSON.stringify(q.labels)}::jsonb`);
  }
  if (q.beforeSeq !== undefined) query = query.where("seq", "<", q.beforeSeq.toString());
  const rows = await query.orderBy("seq", "desc").limit(q.limit).execute();
  return rows.map(toRecord);
}

/**
 * What an agent's signed Issue request is checked against, with the database's clock: now() is
 * the transaction's start, so within one transaction the skew check and the nonce expiry
 * (useNonce) read the very same instant.
 */
export async function proofContext(
  tx: Tx,
  agentId: string,
): Promise<{ publicKey: Uint8Array | undefined; deploymentId: string; nowMs: number }> {
  const { rows } = await sql<{ public_key: Buffer | null; deployment_id: string; now: Date }>`
    select (select public_key from agents where id = ${agentId}) as public_key,
           (select id from deployment) as deployment_id,
           now() as now`.execute(tx);
  const r = rows[0]!;
  return { publicKey: r.public_key ? new Uint8Array(r.public_key) : undefined, deploymentId: r.deployment_id, nowMs: r.now.getTime() };
}

export interface AgentActivitySummary {
  liveTokens: bigint;
  lastActivityAt: Date | null;
  trustScore: number | null;
}

/**
 * Live token counts, latest activity (logged event or counted introspection) and latest recorded
 * trust score for a page of agents, in one statement of index lookups.
 */
export async function agentActivitySummaries(db: Db, ids: readonly string[]): Promise<Map<string, AgentActivitySummary>> {
  const out = new Map<string, AgentActivitySummary>();
  if (ids.length === 0) return out;
  const { rows } = await sql<{ id: string; live: string; last_event: Date | null; last_use: Date | null; score: number | null }>`
    select a.id,
      -- A revoked agent's tokens are all dead, whatever their own rows say.
      (select count(*) from tokens t where t.agent_id = a.id and t.revoked_at is null and t.expires_at > now()
        and exists (select 1 from agents g where g.id = a.id and g.status = 'ACTIVE')) as live,
      (select e.at from audit_entries e where e.agent_id = a.id and e.seq is not null order by e.seq desc limit 1) as last_event,
      (select max(x.minute) from agent_activity x where x.agent_id = a.id) as last_use,
      (select s.score from trust_scores s where s.agent_id = a.id order by s.computed_at desc limit 1) as score
    from unnest(${ids}::text[]) as a(id)`.execute(db);
  for (const r of rows) {
    const times = [r.last_event, r.last_use].filter((t): t is Date => t !== null);
    out.set(r.id, {
      liveTokens: BigInt(r.live),
      lastActivityAt: times.length ? new Date(Math.max(...times.map((t) => t.getTime()))) : null,
      trustScore: r.score === null ? null : Number(r.score),
    });
  }
  return out;
}
