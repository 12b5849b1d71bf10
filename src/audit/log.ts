import type { Logger } from "pino";
import type { Db } from "../store/database.js";
import { latestCheckpoint, listAuditEntries, saveCheckpoint } from "../store/audit.js";
import type { Sequencer } from "../store/sequencer.js";
import { readTreeRanges } from "../store/audit-tree.js";
import { entryBytes, leafHash, storedContent } from "./encoding.js";
import { verifyConsistency } from "./merkle.js";
import { NoteError, NoteSigner, checkpointBody, openCheckpoint, type ParsedCheckpoint } from "./note.js";
import { CheckpointRecord, loadSigningKey } from "./signing-key.js";
import { StoredTree, TreeStoreError } from "./tree-store.js";

export interface SignedCheckpoint {
  origin: string;
  treeSize: bigint;
  rootHash: Buffer;
  note: string;
}

export interface AuditLogOptions {
  db: Db;
  logger: Logger;
  /** The checkpoint origin line and signing key name. */
  origin: string;
  /** PKCS#8 PEM or base64 DER; empty: the key in keyFile, created on first start. */
  signingKey: string;
  /** Where the signing key is kept when not configured (outside the database). */
  keyFile: string;
  /** Where this server keeps the last checkpoint it signed (outside the database). */
  recordFile: string;
  /** How often to sign a new checkpoint while entries arrive. */
  checkpointIntervalMs: number;
  /** Numbers committed entries (each read numbers them first) and knows the log's head. */
  sequencer: Sequencer;
}

/** The server will not sign: the stored tree does not extend a checkpoint it signed before. */
export class SigningRefusedError extends Error {}

const SYNC_BATCH = 5_000;

/** Refusals are logged where they arise; at start they do not stop the server. */
function refused(err: unknown): true {
  if (err instanceof SigningRefusedError) return true;
  throw err;
}

/**
 * The server's view of the transparency log: a Merkle tree stored in PostgreSQL (tree-store.ts),
 * whose leaves are added once each, checked against the entry's contents when added, and
 * a signer that signs only trees that extend every checkpoint it signed before.
 */
export class AuditLog {
  private tree!: StoredTree;
  private syncTail: Promise<void> = Promise.resolve();
  private signQueue: Promise<unknown> = Promise.resolve();
  private latest: SignedCheckpoint | undefined;
  private refusal: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly db: Db,
    private readonly sequencer: Sequencer,
    private readonly logger: Logger,
    readonly signer: NoteSigner,
    private readonly record: CheckpointRecord,
  ) {}

  static async open(o: AuditLogOptions): Promise<AuditLog> {
    const key = await loadSigningKey(o.db, { configured: o.signingKey, file: o.keyFile }, o.logger);
    const log = new AuditLog(o.db, o.sequencer, o.logger, new NoteSigner(o.origin, key), new CheckpointRecord(o.recordFile));
    await log.checkKeySignsTheLog();
    log.tree = await StoredTree.load(o.db);
    await log.sync();
    // Said loudly at start, not only at the first signature.
    if (!(await log.checkExtends(log.tree.size, log.tree.root(), false).catch(refused))) {
      await log.sync();
      await log.checkExtends(log.tree.size, log.tree.root(), true).catch(refused);
    }
    log.timer = setInterval(() => {
      // Nothing numbered since the last signature (the sequencer hears every replica's): no statement.
      if (log.latest && !log.refusal && o.sequencer.head("audit") <= log.latest.treeSize) return;
      log.checkpoint().catch((err: unknown) => {
        if (!(err instanceof SigningRefusedError)) o.logger.error({ err }, "audit checkpoint failed");
      });
    }, o.checkpointIntervalMs);
    log.timer.unref();
    return log;
  }

  get origin(): string {
    return this.signer.name;
  }

  /** Entries in this server's tree. */
  get size(): bigint {
    return BigInt(this.tree.size);
  }

  /** Why the server refuses to sign, if it does. */
  get refusedBecause(): string | undefined {
    return this.refusal;
  }

  /**
   * Numbers the entries committed since the last sync and adds them to the tree. Syncs run one
   * after another, and each reads afresh, so a caller sees at least every entry committed before
   * it called.
   */
  sync(): Promise<void> {
    const run = this.syncTail.then(async () => {
      await this.sequencer.flush("audit");
      while ((await this.addEntries()) === SYNC_BATCH);
    });
    this.syncTail = run.catch(() => {});
    return run;
  }

  /** Adds the next numbered entries to the tree, each checked against its contents; returns how many. */
  private async addEntries(): Promise<number> {
    const from = BigInt(this.tree.size);
    const rows = await listAuditEntries(this.db, { fromSeq: from, limit: SYNC_BATCH });
    const leaves: Buffer[] = [];
    for (const e of rows) {
      if (e.seq !== from + BigInt(leaves.length)) break;
      const leaf = leafHash(entryBytes(storedContent(e)));
      // The hash computed when the entry was numbered, in the transaction after its commit, is
      // the earliest commitment to its contents; a row changed since then keeps it, so that
      // verifiers name that entry.
      if (e.leafHash.length > 0 && !e.leafHash.equals(leaf)) {
        this.logger.error(
          { seq: e.seq.toString() },
          "audit entry no longer matches the leaf hash computed when it was numbered: its row was changed after it was committed",
        );
      }
      leaves.push(e.leafHash.length > 0 ? e.leafHash : leaf);
    }
    const conflicts = await this.tree.append(leaves);
    if (conflicts.length > 0) {
      this.logger.error(
        { rows: conflicts.slice(0, 10).map((r) => `${r.height}/${r.idx}`) },
        "the stored audit tree holds other hashes than this server computed from the entries: it was changed behind its back",
      );
    }
    // A gap (an entry deleted behind the server's back) ends the tree until it is filled.
    return leaves.length;
  }

  /** A checkpoint covering every entry committed before the call; signs a new one if the log grew. */
  checkpoint(): Promise<SignedCheckpoint> {
    const next = this.signQueue.then(async () => {
      await this.sync();
      let size = BigInt(this.tree.size);
      if (this.latest?.treeSize === size && !this.refusal) return this.latest;
      let rootHash = this.tree.root();
      if (!(await this.checkExtends(this.tree.size, rootHash, false))) {
        // Another replica sharing the data folder signed (and recorded) a larger tree since this
        // one synced: catch up once before calling a smaller log a rollback.
        await this.sync();
        size = BigInt(this.tree.size);
        rootHash = this.tree.root();
        await this.checkExtends(this.tree.size, rootHash, true);
      }
      const note = this.signer.sign(checkpointBody({ origin: this.origin, treeSize: size, rootHash }));
      // Recorded outside the database before anyone can see it.
      this.record.write(note);
      await saveCheckpoint(this.db, { treeSize: size, rootHash, note });
      this.latest = { origin: this.origin, treeSize: size, rootHash, note };
      return this.latest;
    });
    this.signQueue = next.catch(() => {});
    return next;
  }

  /** The leaf hashes in this server's tree for these entries (absent: not in the tree yet). */
  async committedLeaves(seqs: readonly bigint[]): Promise<Map<bigint, Buffer>> {
    if (seqs.some((s) => s >= this.size)) await this.sync();
    const inTree = seqs.filter((s) => s < this.size);
    const rows = await readTreeRanges(
      this.db,
      inTree.map((s) => ({ height: 0, from: Number(s), to: Number(s) + 1 })),
    );
    const out = new Map<bigint, Buffer>();
    for (const s of inTree) {
      const h = rows.get(0, Number(s));
      if (h) out.set(s, h);
    }
    return out;
  }

  /** Ranges are checked by the caller against a checkpoint's size. */
  inclusionProof(index: bigint, size: bigint): Promise<Buffer[]> {
    return this.tree.inclusionProof(Number(index), Number(size));
  }

  consistencyProof(first: bigint, second: bigint): Promise<Buffer[]> {
    return this.tree.consistencyProof(Number(first), Number(second));
  }

  /** The stored tree, for tiles. */
  get storedTree(): StoredTree {
    return this.tree;
  }

  /**
   * Refuses (SigningRefusedError, logged once) unless the tree of `size` leaves with this root
   * extends every checkpoint this server can prove it signed: its own record outside the
   * database, and the latest checkpoint in the database that carries its signature. The
   * consistency proof is computed from the stored hashes, so a rewrite of stored entries or
   * hashes below a signed size cannot pass, and the server never signs a rewritten history.
   * Unless `final`, a signed size above `size` answers false (sync and ask again) instead.
   */
  private async checkExtends(size: number, root: Buffer, final: boolean): Promise<boolean> {
    const bases: { cp: ParsedCheckpoint; where: string }[] = [];
    const recorded = this.record.read();
    if (recorded) {
      try {
        bases.push({ cp: this.open(recorded), where: `recorded in ${this.record.file}` });
      } catch (err) {
        this.logger.warn({ file: this.record.file, err: (err as Error).message }, "ignoring a recorded checkpoint not signed by this key");
      }
    }
    const stored = await latestCheckpoint(this.db);
    if (stored) {
      try {
        bases.push({ cp: this.open(stored.note), where: "the latest in audit_checkpoints" });
      } catch {
        // Not signed by this key: checked at start; a forged row proves nothing.
      }
    }
    for (const { cp, where } of bases) {
      const m = Number(cp.treeSize);
      let why: string | undefined;
      if (m > size) {
        if (!final) return false;
        why = `the log has ${size} entries, but this server signed a checkpoint of ${m} (${where}): entries were deleted or the database was rolled back`;
      } else if (m > 0) {
        let proof: Buffer[] | undefined;
        try {
          proof = await this.tree.consistencyProof(m, size);
        } catch (err) {
          if (!(err instanceof TreeStoreError)) throw err;
          why = `${err.message}, below the checkpoint of ${m} entries this server signed (${where})`;
        }
        if (proof && !verifyConsistency(m, size, cp.rootHash, root, proof)) {
          why = `the stored tree of ${size} entries does not extend the checkpoint of ${m} entries this server signed (${where}): history was rewritten`;
        }
      }
      if (why) {
        if (this.refusal !== why) this.logger.error({ treeSize: size, signedSize: m }, `REFUSING TO SIGN the audit log: ${why}`);
        this.refusal = why;
        throw new SigningRefusedError(`the server refuses to sign the audit log: ${why}`);
      }
    }
    if (this.refusal) this.logger.warn("the audit log extends its signed checkpoints again; signing resumes");
    this.refusal = undefined;
    return true;
  }

  private open(note: string): ParsedCheckpoint {
    return openCheckpoint(note, this.signer.name, this.signer.publicKey);
  }

  // Replicas must share one key. A replica that made a key of its own (its key file missing)
  // while the log's checkpoints carry another key's signature stops here, not after signing.
  private async checkKeySignsTheLog(): Promise<void> {
    const stored = await latestCheckpoint(this.db);
    if (!stored) return;
    try {
      this.open(stored.note);
    } catch (err) {
      if (err instanceof NoteError && err.message.startsWith("no signature")) {
        throw new Error(
          `the audit log's checkpoints are not signed by this server's key ${this.signer.verifierKey}: ` +
            "give every replica the log's key (the same AGENTID_AUDIT_KEY_FILE contents, or AGENTID_AUDIT_SIGNING_KEY)",
        );
      }
      this.logger.error({ err: (err as Error).message }, "the latest checkpoint in audit_checkpoints does not verify: it was forged");
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.syncTail;
    await this.signQueue;
  }
}
