import { sql } from "kysely";
import type { Db } from "./database.js";
import type { PassResult, SequencedLog } from "./sequencer.js";

export const REVOCATION_CHANNEL = "agentid_revocations";

export interface RevocationRecord {
  revision: bigint;
  tokenId: string | null;
  agentId: string;
  reason: string;
  revokedBy: string;
  revokedAt: Date;
  expiresAt: Date | null;
}

/** The revocation log, as the sequencer numbers it (migration 0005: agentid_sequence_revocations). */
export const revocationLog: SequencedLog = {
  name: "revocations",
  channel: REVOCATION_CHANNEL,
  async pass(db: Db, max: number, waiting: bigint[]): Promise<PassResult> {
    const { rows } = await sql<{ o_head: string; o_numbered: number; o_busy: boolean; o_ids: string[] | null; o_revisions: string[] | null }>`
      select * from agentid_sequence_revocations(${max}::integer, ${waiting.map(String)}::bigint[])`.execute(db);
    const r = rows[0]!;
    const found = new Map<bigint, bigint>();
    (r.o_ids ?? []).forEach((id, i) => found.set(BigInt(id), BigInt(r.o_revisions![i]!)));
    return { head: BigInt(r.o_head), numbered: r.o_numbered, busy: r.o_busy, found };
  },
};

export type RevokeOutcome =
  | { outcome: "not_found" }
  /** A new event, committed; `event` is its id until the sequencer numbers it. */
  | { outcome: "revoked"; event: bigint; tokensRevoked: bigint }
  /** Already revoked: the original event's revision, or its id while it waits for its number. */
  | { outcome: "repeat"; revision: bigint | null; event: bigint | null };

/**
 * The canonical bytes of the revocation's audit entry, with what only the database knows left as
 * placeholders (see auditTemplate in src/audit/append.ts and migration 0005).
 */
export interface AuditTemplate {
  prefix: string;
  suffix: string;
  detailsJson: string;
}

type RevokeRow = { o_outcome: "not_found" | "revoked" | "repeat"; o_event: string | null; o_revision: string | null; o_tokens: string };

function toOutcome(r: RevokeRow): RevokeOutcome {
  switch (r.o_outcome) {
    case "not_found":
      return { outcome: "not_found" };
    case "revoked":
      return { outcome: "revoked", event: BigInt(r.o_event!), tokensRevoked: BigInt(r.o_tokens) };
    case "repeat":
      return {
        outcome: "repeat",
        revision: r.o_revision === null ? null : BigInt(r.o_revision),
        event: r.o_event === null ? null : BigInt(r.o_event),
      };
    default: {
      const never: never = r.o_outcome;
      throw new Error(`unexpected revoke outcome ${String(never)}`);
    }
  }
}

/**
 * Revokes an agent in one round trip: waits for its in-flight issuances to commit (and holds
 * off new ones), counts its live tokens, appends the event and the audit entry, marks it REVOKED.
 */
export async function revokeAgentRow(
  db: Db,
  r: { agentId: string; reason: string; revokedBy: string; audit: AuditTemplate },
): Promise<RevokeOutcome> {
  const { rows } = await sql<RevokeRow>`
    select * from agentid_revoke_agent(${r.agentId}, ${r.reason}, ${r.revokedBy}, ${r.audit.prefix}, ${r.audit.suffix}, ${r.audit.detailsJson})`.execute(db);
  return toOutcome(rows[0]!);
}

/** Revokes one token, found by its hash or its id, in one round trip; see revokeAgentRow. */
export async function revokeTokenRow(
  db: Db,
  r: { tokenHash?: Uint8Array; tokenId?: string; reason: string; revokedBy: string; audit: AuditTemplate },
): Promise<RevokeOutcome> {
  const hash = r.tokenHash ? Buffer.from(r.tokenHash) : null;
  const { rows } = await sql<RevokeRow>`
    select * from agentid_revoke_token(${hash}::bytea, ${r.tokenId ?? null}::text, ${r.reason}, ${r.revokedBy},
      ${r.audit.prefix}, ${r.audit.suffix}, ${r.audit.detailsJson})`.execute(db);
  return toOutcome(rows[0]!);
}

type LogRow = {
  revision: string | null;
  token_id: string | null;
  agent_id: string;
  reason: string;
  revoked_by: string;
  revoked_at: Date;
  expires_at: Date | null;
  compacted: string;
  head: string;
};

export interface LogPage {
  events: RevocationRecord[];
  /** Compaction has removed events at or below this revision (read in the same snapshot). */
  compactedThrough: bigint;
  /** The last revision committed in that snapshot: a short page has every event up to it. */
  head: bigint;
}

/**
 * Events after `after`, oldest first, with the compaction floor from the same snapshot: if the
 * floor is above `after`, events in between may be gone and the page must not be trusted as gap-free.
 */
export async function readRevocationsAfter(db: Db, after: bigint, limit: number): Promise<LogPage> {
  const { rows } = await sql<LogRow>`
    select r.revision, r.token_id, r.agent_id, r.reason, r.revoked_by, r.revoked_at, r.expires_at,
           c.revision as compacted, h.revision as head
    from feed_compaction c cross join log_head h
    left join lateral (
      select * from revocations where revision > ${after.toString()}::bigint order by revision limit ${limit}
    ) r on true`.execute(db);
  const events: RevocationRecord[] = [];
  for (const r of rows) {
    if (r.revision === null) continue;
    events.push({
      revision: BigInt(r.revision),
      tokenId: r.token_id,
      agentId: r.agent_id,
      reason: r.reason,
      revokedBy: r.revoked_by,
      revokedAt: r.revoked_at,
      expiresAt: r.expires_at,
    });
  }
  return { events, compactedThrough: BigInt(rows[0]!.compacted), head: BigInt(rows[0]!.head) };
}

export async function headRevision(db: Db): Promise<bigint> {
  const row = await db.selectFrom("log_head").select("revision").executeTakeFirstOrThrow();
  return BigInt(row.revision);
}

/** The last revision handed out and the compaction floor, from one snapshot. */
export async function logBounds(db: Db): Promise<{ head: bigint; compactedThrough: bigint }> {
  const { rows } = await sql<{ head: string; compacted: string }>`
    select h.revision as head, c.revision as compacted from log_head h, feed_compaction c`.execute(db);
  return { head: BigInt(rows[0]!.head), compactedThrough: BigInt(rows[0]!.compacted) };
}

/**
 * Drops token events whose token has expired (the revocation no longer matters) and that are older
 * than minAgeMs (so a briefly disconnected watcher resumes instead of replaying). Agent events are
 * kept forever. Raises the compaction floor to the highest revision removed. Returns rows removed.
 */
export async function compactRevocations(db: Db, minAgeMs: number, batch = 5000): Promise<number> {
  let total = 0;
  for (;;) {
    const { rows } = await sql<{ n: string }>`
      with d as (
        delete from revocations where revision in (
          select revision from revocations
          where token_id is not null and expires_at < now()
            and revoked_at < now() - ${minAgeMs} * interval '1 millisecond'
          limit ${batch})
        returning revision),
      u as (
        update feed_compaction set revision = greatest(revision, (select max(revision) from d))
        where exists (select 1 from d))
      select count(*) as n from d`.execute(db);
    const n = Number(rows[0]!.n);
    total += n;
    if (n < batch) return total;
  }
}
