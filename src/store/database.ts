import type { ColumnType, Generated, Kysely, Transaction } from "kysely";

// Timestamps come back from pg as Date; bigints as strings (pg's int8 default), parsed in the repositories.
type Timestamp = ColumnType<Date, Date | string, Date | string>;
type GeneratedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface AgentsTable {
  id: string;
  seq: Generated<string>;
  name: string;
  public_key: Buffer;
  labels: ColumnType<Record<string, string>, string, string>;
  status: "ACTIVE" | "REVOKED";
  created_at: GeneratedTimestamp;
  revoked_at: Timestamp | null;
  revoked_reason: string | null;
  revoked_by: string | null;
  revoked_revision: ColumnType<string | null, bigint | null, bigint | null>;
  allowed_scopes: ColumnType<string[], string[] | undefined, string[]>;
  allowed_audiences: ColumnType<string[], string[] | undefined, string[]>;
}

/** One row: this deployment's id (migration 0020), which agents sign into their proofs. */
export interface DeploymentTable {
  only_row: ColumnType<boolean, never, never>;
  id: string;
}

export interface TokensTable {
  id: string;
  /** SHA-256 of the token; the token itself is never stored. */
  token_hash: Buffer;
  agent_id: string;
  scopes: string[];
  audiences: string[];
  issued_at: GeneratedTimestamp;
  expires_at: Timestamp;
  revoked_at: Timestamp | null;
  /** Set by versions before migration 0005 only; the revision is read from `revocations` now. */
  revoked_revision: ColumnType<string | null, bigint | null, bigint | null>;
}

/** The revocation log: numbered, committed events, in revision order (the feed reads these). */
export interface RevocationsTable {
  id: ColumnType<string, never, never>;
  revision: ColumnType<string, never, never>;
  token_id: string | null;
  agent_id: string;
  reason: string;
  revoked_by: string;
  revoked_at: GeneratedTimestamp;
  expires_at: Timestamp | null;
}

/**
 * Revocations committed but not numbered yet. The sequencer (store/sequencer.ts) moves them into
 * `revocations` in batches, under log_head's row lock, numbering them in commit order.
 */
export interface RevocationInboxTable {
  id: Generated<string>;
  token_id: string | null;
  agent_id: string;
  reason: string;
  revoked_by: string;
  revoked_at: GeneratedTimestamp;
  expires_at: Timestamp | null;
}

/**
 * One row: the last revision handed out. Only the sequencer locks it, for one short numbering
 * transaction at a time; revokers never take it, so their commits do not queue behind each other.
 */
export interface LogHeadTable {
  id: ColumnType<boolean, boolean, never>;
  revision: ColumnType<string, bigint, bigint>;
}

export type Role = "admin" | "issuer" | "resource_server";

export interface ApiKeysTable {
  id: string;
  /** SHA-256 of the secret; the secret itself is never stored. */
  key_hash: Buffer;
  name: string;
  role: Role;
  audiences: ColumnType<string[], string[] | undefined, string[]>;
  created_at: GeneratedTimestamp;
  created_by: string;
  revoked_at: Timestamp | null;
}

export interface AgentNoncesTable {
  agent_id: string;
  nonce: string;
  expires_at: Timestamp;
}

export interface AgentActivityTable {
  agent_id: string;
  minute: Timestamp;
  introspections: ColumnType<string, number | undefined, never>;
  scope_violations: ColumnType<string, number | undefined, never>;
  incidents: ColumnType<string, number | undefined, never>;
}

export interface ActivityReportsTable {
  id: Generated<string>;
  agent_id: string;
  kind: string;
  detail: string;
  reported_by: string;
  at: GeneratedTimestamp;
}

export interface TrustScoresTable {
  id: Generated<string>;
  agent_id: string;
  score: number;
  factors: ColumnType<TrustFactorRow[], string, string>;
  computed_at: GeneratedTimestamp;
}

export interface TrustFactorRow {
  name: string;
  contribution: number;
  detail: string;
  /** Absent in rows written before migration 0015. */
  count?: number;
  windowMs?: number;
  baseline?: number;
}

export type PolicyKind = "scope_violations" | "trust_below";

export interface PoliciesTable {
  name: string;
  kind: PolicyKind;
  threshold: number;
  window_seconds: number | null;
  created_at: GeneratedTimestamp;
  created_by: string;
}

/** One row: how many audit entries are numbered. Only the sequencer locks it, as log_head. */
export interface AuditHeadTable {
  id: ColumnType<boolean, boolean, never>;
  size: ColumnType<string, bigint, bigint>;
}

/**
 * The transparency log's numbered entries, written once by the sequencer: seq (the RFC 6962 leaf
 * index), time and leaf hash are fixed when an entry is moved here from audit_inbox.
 */
export interface AuditEntriesTable {
  id: ColumnType<string, never, never>;
  seq: ColumnType<string, never, never>;
  at: ColumnType<Date, never, never>;
  kind: string;
  agent_id: string | null;
  token_id: string | null;
  actor: string;
  reason: string;
  details: ColumnType<Record<string, unknown>, string, string>;
  leaf_hash: ColumnType<Buffer, never, never>;
  salt: ColumnType<string, never, never>;
}

/** Entries committed by writers and not numbered yet, with the canonical bytes around seq and time. */
export interface AuditInboxTable {
  id: Generated<string>;
  kind: string;
  agent_id: string | null;
  token_id: string | null;
  actor: string;
  reason: string;
  details: ColumnType<Record<string, unknown>, string, string>;
  leaf_prefix: Buffer;
  leaf_suffix: Buffer;
}

export interface AuditCheckpointsTable {
  tree_size: ColumnType<string, bigint, never>;
  root_hash: Buffer;
  note: string;
  signed_at: GeneratedTimestamp;
}

export interface AuditKeysTable {
  id: ColumnType<boolean, boolean | undefined, never>;
  private_key_pem: string;
  public_key: Buffer;
  created_at: GeneratedTimestamp;
}

/** The log's Merkle tree: row (height, idx) hashes leaves idx * 2^height to (idx + 1) * 2^height - 1. */
export interface AuditTreeTable {
  height: number;
  idx: ColumnType<string, string, never>;
  hash: Buffer;
}

/** One row: the highest revision compaction has removed from the log. */
export interface FeedCompactionTable {
  id: ColumnType<boolean, boolean, never>;
  revision: ColumnType<string, bigint, bigint>;
}

export interface UsageCountsTable {
  agent_id: string;
  bucket: Timestamp;
  reporter: string;
  source: "report" | "gateway" | "introspect";
  audience: string;
  scope: string;
  /** The reporter's name for what the requests did; '' when not named. */
  operation: ColumnType<string, string | undefined, string>;
  outcome: string;
  n: ColumnType<string, number, number>;
  first_seen: Timestamp;
  last_seen: Timestamp;
  /** How much of n the transparency log holds. */
  logged: ColumnType<string, number | undefined, number>;
}

export interface AgentAccessTable {
  agent_id: string;
  kind: "scope" | "audience";
  name: string;
  first_seen: GeneratedTimestamp;
}

export interface UsageDropsTable {
  reporter: string;
  bucket: Timestamp;
  n: ColumnType<string, number, number>;
}

export interface UsageTrailHeadTable {
  id: ColumnType<boolean, boolean, never>;
  logged_before: Timestamp;
}

export interface Database {
  agents: AgentsTable;
  deployment: DeploymentTable;
  tokens: TokensTable;
  revocations: RevocationsTable;
  revocation_inbox: RevocationInboxTable;
  log_head: LogHeadTable;
  api_keys: ApiKeysTable;
  agent_nonces: AgentNoncesTable;
  agent_activity: AgentActivityTable;
  activity_reports: ActivityReportsTable;
  trust_scores: TrustScoresTable;
  policies: PoliciesTable;
  audit_head: AuditHeadTable;
  audit_entries: AuditEntriesTable;
  audit_inbox: AuditInboxTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_keys: AuditKeysTable;
  audit_tree: AuditTreeTable;
  feed_compaction: FeedCompactionTable;
  usage_counts: UsageCountsTable;
  agent_access: AgentAccessTable;
  usage_drops: UsageDropsTable;
  usage_trail_head: UsageTrailHeadTable;
}

export type Db = Kysely<Database>;
/** Functions that must run inside a transaction take this type. */
export type Tx = Transaction<Database>;
