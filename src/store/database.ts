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
  revoked_revision: ColumnType<string | null, bigint | null, bigint | null>;
}

/** The revocation log. revision is handed out by log_head so that commit order is revision order. */
export interface RevocationsTable {
  revision: ColumnType<string, bigint, never>;
  token_id: string | null;
  agent_id: string;
  reason: string;
  revoked_by: string;
  revoked_at: GeneratedTimestamp;
  expires_at: Timestamp | null;
}

/** One row: the last revision handed out. Its row lock serialises revokers until they commit. */
export interface LogHeadTable {
  id: ColumnType<boolean, boolean, never>;
  revision: ColumnType<string, bigint, bigint>;
}

/** One row: the highest revision compaction has removed from the log. */
export interface FeedCompactionTable {
  id: ColumnType<boolean, boolean, never>;
  revision: ColumnType<string, bigint, bigint>;
}

export interface Database {
  agents: AgentsTable;
  tokens: TokensTable;
  revocations: RevocationsTable;
  log_head: LogHeadTable;
  feed_compaction: FeedCompactionTable;
}

export type Db = Kysely<Database>;
/** Functions that must run inside a transaction take this type. */
export type Tx = Transaction<Database>;
