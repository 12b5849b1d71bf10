import type { Db } from "../store/database.js";
import { listAuditEntries, listCheckpoints, type AuditEntryRecord, type EntryVisibility, type StoredCheckpoint } from "../store/audit.js";
import { DomainError, invalidArgument } from "./errors.js";
import { decodePageToken, encodePageToken, requireAgentId } from "./validate.js";
import { KIND_SHAPE } from "../audit/append.js";
import { SigningRefusedError, type AuditLog, type SignedCheckpoint } from "../audit/log.js";

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

function outOfRange(message: string): DomainError {
  return new DomainError("out_of_range", message);
}

/** Resolves a requested tree size (0 = the latest checkpoint's) and checks the log has it. */
async function treeSize(log: AuditLog, field: string, requested: bigint): Promise<bigint> {
  if (requested < 0n) throw invalidArgument(field, "must not be negative");
  if (requested === 0n) return (await signedCheckpoint(log)).treeSize;
  if (requested > log.size) await log.sync();
  if (requested > log.size) throw outOfRange(`${field}: the log has only ${log.size} entries`);
  return requested;
}

/** The latest checkpoint; FAILED_PRECONDITION while the server refuses to sign a rewritten log. */
export async function signedCheckpoint(log: AuditLog): Promise<SignedCheckpoint> {
  try {
    return await log.checkpoint();
  } catch (err) {
    if (err instanceof SigningRefusedError) throw new DomainError("failed_precondition", err.message);
    throw err;
  }
}

export async function inclusionProof(log: AuditLog, leafIndex: bigint, requestedSize: bigint) {
  if (leafIndex < 0n) throw invalidArgument("leaf_index", "must not be negative");
  const size = await treeSize(log, "tree_size", requestedSize);
  if (leafIndex >= size) throw invalidArgument("leaf_index", `must be less than tree_size ${size}`);
  return { leafIndex, treeSize: size, hashes: await log.inclusionProof(leafIndex, size) };
}

export async function consistencyProof(log: AuditLog, first: bigint, requestedSecond: bigint) {
  const second = await treeSize(log, "second_tree_size", requestedSecond);
  if (first < 1n || first > second) throw invalidArgument("first_tree_size", `must be from 1 to second_tree_size ${second}`);
  return { firstTreeSize: first, secondTreeSize: second, hashes: await log.consistencyProof(first, second) };
}

export interface EntryQuery {
  /** What the caller may see; the route derives it from the caller's role. */
  visibility: EntryVisibility;
  agentId: string;
  kind: string;
  since?: Date;
  until?: Date;
  startSeq: bigint;
  pageSize: number;
  pageToken: string;
}

export interface EntryWithLeaf extends AuditEntryRecord {
  /** The leaf hash in the server's tree (not the stored column); empty if not in the tree yet. */
  committedLeafHash: Buffer;
}

export async function listEntryPage(
  db: Db,
  log: AuditLog,
  q: EntryQuery,
): Promise<{ entries: EntryWithLeaf[]; nextPageToken: string }> {
  if (q.agentId) requireAgentId("agent_id", q.agentId);
  if (q.kind && (!KIND_SHAPE.test(q.kind) || q.kind.length > 64)) {
    throw invalidArgument("kind", "is not an entry kind (dotted lower-case words, e.g. token.issued)");
  }
  if (q.pageSize < 0 || q.pageSize > MAX_PAGE_SIZE) throw invalidArgument("page_size", `must be between 0 and ${MAX_PAGE_SIZE}`);
  if (q.startSeq < 0n) throw invalidArgument("start_seq", "must not be negative");
  if (q.since && q.until && q.since >= q.until) throw invalidArgument("until", "must be after since");
  const limit = q.pageSize || DEFAULT_PAGE_SIZE;
  // The page token is the next seq to read.
  const cursor = q.pageToken ? decodePageToken(q.pageToken, "ListEntries") : 0n;
  // Entries committed before this call are numbered before it reads.
  await log.sync();
  const fromSeq = cursor > q.startSeq ? cursor : q.startSeq;
  const rows = await listAuditEntries(db, {
    visibility: q.visibility,
    agentId: q.agentId || undefined,
    kind: q.kind || undefined,
    since: q.since,
    until: q.until,
    fromSeq,
    limit: limit + 1,
  });
  const page = rows.slice(0, limit);
  const entries: EntryWithLeaf[] = [];
  const committed = await log.committedLeaves(page.map((r) => r.seq));
  for (const r of page) entries.push({ ...r, committedLeafHash: committed.get(r.seq) ?? Buffer.alloc(0) });
  const last = page[page.length - 1];
  const nextPageToken = rows.length > limit && last ? encodePageToken(last.seq + 1n) : "";
  return { entries, nextPageToken };
}

export async function listCheckpointPage(
  db: Db,
  q: { maxTreeSize: bigint; pageSize: number; pageToken: string },
): Promise<{ checkpoints: StoredCheckpoint[]; nextPageToken: string }> {
  if (q.maxTreeSize < 0n) throw invalidArgument("max_tree_size", "must not be negative");
  if (q.pageSize < 0 || q.pageSize > MAX_PAGE_SIZE) throw invalidArgument("page_size", `must be between 0 and ${MAX_PAGE_SIZE}`);
  const limit = q.pageSize || DEFAULT_PAGE_SIZE;
  // Here the token is the tree size to continue below.
  const beforeSize = q.pageToken ? decodePageToken(q.pageToken, "ListCheckpoints") : undefined;
  const rows = await listCheckpoints(db, { maxSize: q.maxTreeSize || undefined, beforeSize, limit: limit + 1 });
  const checkpoints = rows.slice(0, limit);
  const last = checkpoints[checkpoints.length - 1];
  const nextPageToken = rows.length > limit && last ? encodePageToken(last.treeSize) : "";
  return { checkpoints, nextPageToken };
}
