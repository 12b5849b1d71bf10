import { generateKeyPairSync } from "node:crypto";
import type { Logger } from "pino";
import type { Db } from "../store/database.js";
import { latestCheckpoint, loadOrCreateSigningKey, readLeafHashes, saveCheckpoint } from "../store/audit.js";
import type { Sequencer } from "../store/sequencer.js";
import { MerkleTree } from "./merkle.js";
import { NoteSigner, checkpointBody, parseSigningKey, rawPublicKey } from "./note.js";

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
  /** PKCS#8 PEM or base64 DER; empty: the key stored in the database, created on first start. */
  signingKey: string;
  /** How often to sign a new checkpoint while entries arrive. */
  checkpointIntervalMs: number;
  /** Numbers committed entries (each read numbers them first) and knows the log's head. */
  sequencer: Sequencer;
}

const SYNC_BATCH = 10_000;

/**
 * The server's view of the transparency log: a Merkle tree over the leaf hashes committed in
 * PostgreSQL, grown by reading new rows (from this or any replica), and a signer. Leaves already
 * in the tree are never re-read, so a row changed in the database afterwards no longer matches
 * what this server serves and signs.
 */
export class AuditLog {
  private readonly tree = new MerkleTree();
  private syncTail: Promise<void> = Promise.resolve();
  private signQueue: Promise<unknown> = Promise.resolve();
  private latest: SignedCheckpoint | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly db: Db,
    private readonly sequencer: Sequencer,
    private readonly logger: Logger,
    readonly signer: NoteSigner,
  ) {}

  static async open(o: AuditLogOptions): Promise<AuditLog> {
    const pem =
      o.signingKey ||
      (await loadOrCreateSigningKey(o.db, () => {
        const { privateKey } = generateKeyPairSync("ed25519");
        return { pem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), publicKey: rawPublicKey(privateKey) };
      }));
    let key;
    try {
      key = parseSigningKey(pem);
    } catch (err) {
      // Never echo the key itself.
      const where = o.signingKey ? "AGENTID_AUDIT_SIGNING_KEY" : "the signing key stored in audit_keys";
      throw new Error(`${where} is not an Ed25519 PKCS#8 key (PEM, or base64 DER): ${(err as Error).message}`);
    }
    const log = new AuditLog(o.db, o.sequencer, o.logger, new NoteSigner(o.origin, key));
    await log.sync();
    await log.checkStoredCheckpoint();
    log.timer = setInterval(() => {
      // Nothing numbered since the last signature (the sequencer hears every replica's): no statement.
      if (log.latest && o.sequencer.head("audit") <= log.latest.treeSize) return;
      log.checkpoint().catch((err: unknown) => o.logger.error({ err }, "audit checkpoint failed"));
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

  /**
   * Numbers the entries committed since the last sync and reads them into the tree. Syncs run one
   * after another, and each reads afresh, so a caller sees at least every entry committed before
   * it called.
   */
  sync(): Promise<void> {
    const run = this.syncTail.then(async () => {
      await this.sequencer.flush("audit");
      for (;;) {
        const hashes = await readLeafHashes(this.db, BigInt(this.tree.size), SYNC_BATCH);
        for (const h of hashes) this.tree.append(h);
        if (hashes.length < SYNC_BATCH) return;
      }
    });
    this.syncTail = run.catch(() => {});
    return run;
  }

  /** A checkpoint covering every entry committed before the call; signs a new one if the log grew. */
  checkpoint(): Promise<SignedCheckpoint> {
    const next = this.signQueue.then(async () => {
      await this.sync();
      const size = BigInt(this.tree.size);
      if (this.latest?.treeSize === size) return this.latest;
      const rootHash = this.tree.root(this.tree.size);
      const note = this.signer.sign(checkpointBody({ origin: this.origin, treeSize: size, rootHash }));
      await saveCheckpoint(this.db, { treeSize: size, rootHash, note });
      this.latest = { origin: this.origin, treeSize: size, rootHash, note };
      return this.latest;
    });
    this.signQueue = next.catch(() => {});
    return next;
  }

  /** The leaf hash this server committed to for seq, if the entry is in its tree. */
  async leafHash(seq: bigint): Promise<Buffer | undefined> {
    if (seq >= this.size) await this.sync();
    return seq < this.size ? this.tree.leaf(Number(seq)) : undefined;
  }

  /** Ranges are checked by the caller against a checkpoint's size. */
  inclusionProof(index: bigint, size: bigint): Buffer[] {
    return this.tree.inclusionProof(Number(index), Number(size));
  }

  consistencyProof(first: bigint, second: bigint): Buffer[] {
    return this.tree.consistencyProof(Number(first), Number(second));
  }

  // A rewrite of stored entries that also fixed their leaf hashes shows after a restart as a
  // tree that no longer matches what was signed before. Say so loudly; verifiers holding an
  // older checkpoint will see it too.
  private async checkStoredCheckpoint(): Promise<void> {
    const stored = await latestCheckpoint(this.db);
    if (!stored) return;
    if (stored.treeSize > this.size) {
      this.logger.error(
        { signedSize: stored.treeSize.toString(), entries: this.tree.size },
        "audit log has fewer contiguous entries than its last signed checkpoint: entries were deleted",
      );
    } else if (!this.tree.root(Number(stored.treeSize)).equals(stored.rootHash)) {
      this.logger.error(
        { signedSize: stored.treeSize.toString() },
        "audit log does not match its last signed checkpoint: stored entries were changed",
      );
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.syncTail;
    await this.signQueue;
  }
}
