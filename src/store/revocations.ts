import { sql } from "kysely";
import type { Db } from "./database.js";
import type { LogEvent } from "./revocation-reads.js";
import type { PassResult, SequencedLog } from "./sequencer.js";

const REVOCATION_CHANNEL = "agentid_revocations";

type PassRow = {
  o_head: string;
  o_numbered: number;
  o_busy: boolean;
  o_ids: string[] | null;
  o_revisions: string[] | null;
  o_rev: string[] | null;
  o_token_id: (string | null)[] | null;
  o_agent_id: string[] | null;
  o_reason: string[] | null;
  o_revoked_by: string[] | null;
  o_revoked_at: Date[] | null;
  o_expires_at: (Date | null)[] | null;
  o_audiences: string[][] | null;
};

/**
 * The revocation log, as the sequencer numbers it (migration 0040: agentid_number_revocations):
 * each pass also returns the events it numbered, with their audiences, for this replica's feed.
 */
export const revocationLog: SequencedLog = {
  name: "revocations",
  channel: REVOCATION_CHANNEL,
  async pass(db: Db, max: number, waiting: bigint[]): Promise<PassResult> {
    const { rows } = await sql<PassRow>`
      select * from agentid_number_revocations(${max}::integer, ${waiting.map(String)}::bigint[])`.execute(db);
    const r = rows[0]!;
    const found = new Map<bigint, bigint>();
    (r.o_ids ?? []).forEach((id, i) => found.set(BigInt(id), BigInt(r.o_revisions![i]!)));
    const events: LogEvent[] = (r.o_rev ?? []).map((rev, i) => ({
      revision: BigInt(rev),
      tokenId: r.o_token_id![i] ?? null,
      agentId: r.o_agent_id![i]!,
      reason: r.o_reason![i]!,
      revokedBy: r.o_revoked_by![i]!,
      revokedAt: r.o_revoked_at![i]!,
      expiresAt: r.o_expires_at![i] ?? null,
      audiences: r.o_audiences![i]!,
    }));
    return { head: BigInt(r.o_head), numbered: r.o_numbered, busy: r.o_busy, found, events };
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

// The feed's reads (pages, bounds, compaction) are in revocation-reads.ts.
