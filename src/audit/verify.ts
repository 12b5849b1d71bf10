import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { AuditEntry, AuditService } from "../../gen/agentid/v1/audit_pb.js";
import { entryBytes, leafHash, type EntryContent } from "./encoding.js";
import type { JsonValue } from "./canonical-json.js";
import { MerkleTree, rootFromInclusionProof, verifyConsistency } from "./merkle.js";
import { TILE_WIDTH, decodeEntryBundle, tilePath } from "./tiles.js";
import { NoteError, findCosignature, openCheckpoint, parseCosignerKey, verifierKey, type ParsedCheckpoint } from "./note.js";

// Offline verification for `agentid audit verify`. Trusts nothing the server stores: leaf hashes
// are recomputed from the entries' contents, the tree is rebuilt here, and every checkpoint's
// signature is checked. The server's committed leaf hashes are used only to say which entry is
// wrong.

export interface Problem {
  /** The entry concerned, when one can be named. */
  seq?: bigint;
  message: string;
}

export interface VerifyOptions {
  /**
   * Read the checkpoint, entries and leaves as C2SP tlog-tiles: GET of a path below the log's
   * prefix ("checkpoint", "tile/0/000", ...), throwing ConnectError(FailedPrecondition) with the
   * server's words when it refuses to sign.
   */
  tiles?: (path: string) => Promise<Buffer>;
  /** A checkpoint note saved earlier; the log must still contain it. */
  savedCheckpoint?: string;
  /** A verifier key (name+id+key) to trust instead of the one the server reports. */
  verifierKey?: string;
  pageSize?: number;
  /** How many inclusion proofs to spot-check against the current checkpoint. */
  inclusionSamples?: number;
  /** Checkpoints cosigned by witnesses (where each came from, and the note with cosignatures). */
  witnessed?: { source: string; note: string }[];
  /** Witness (cosigner) verifier keys to trust; cosignatures by other keys are ignored. */
  witnessKeys?: string[];
  /** How many distinct trusted witnesses must have cosigned a checkpoint the log extends. */
  minWitnesses?: number;
}

export interface VerifyReport {
  ok: boolean;
  problems: Problem[];
  /** The current checkpoint, if it verified. */
  checkpoint?: ParsedCheckpoint;
  entries: number;
  verifierKey: string;
  savedSize?: bigint;
  /** The trusted witnesses whose cosigned checkpoint the log extends. */
  witnesses: string[];
}

export function parseVerifierKey(vkey: string): { name: string; key: Buffer } {
  // name+hexid+base64: the name and id hold no "+", but base64 may.
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim());
  const raw = Buffer.from(m?.[3] ?? "", "base64");
  if (!m || raw.length !== 33 || raw[0] !== 1) throw new Error(`not an Ed25519 verifier key: ${vkey}`);
  const name = m[1]!;
  const key = raw.subarray(1);
  if (verifierKey(name, key) !== vkey.trim()) throw new Error(`verifier key id does not match its key: ${vkey}`);
  return { name, key };
}

export async function verifyLog(client: Client<typeof AuditService>, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const problems: Problem[] = [];
  const witnesses = new Set<string>();
  const report = (ok = problems.length === 0) => ({
    ok,
    problems: sortProblems(problems),
    entries,
    verifierKey: vkey,
    checkpoint,
    savedSize,
    witnesses: [...witnesses],
  });
  let entries = 0;
  let checkpoint: ParsedCheckpoint | undefined;
  let savedSize: bigint | undefined;

  const pk = await client.getPublicKey({});
  let vkey = pk.verifierKey;
  let name = pk.origin;
  let key: Buffer = Buffer.from(pk.publicKey);
  if (verifierKey(name, key) !== vkey) problems.push({ message: "the server's verifier key does not match its public key" });
  if (opts.verifierKey) {
    const pinned = parseVerifierKey(opts.verifierKey);
    if (pinned.name !== name || !pinned.key.equals(key)) {
      problems.push({ message: `the server signs with ${vkey}, not the pinned key ${opts.verifierKey}` });
    }
    ({ name, key } = pinned);
    vkey = opts.verifierKey.trim();
  }

  let note: string;
  try {
    note = opts.tiles ? (await opts.tiles("checkpoint")).toString("utf8") : ((await client.getCheckpoint({})).checkpoint?.note ?? "");
  } catch (err) {
    const e = ConnectError.from(err);
    if (e.code !== Code.FailedPrecondition) throw err;
    problems.push({ message: e.rawMessage });
    return report(false);
  }
  try {
    checkpoint = openCheckpoint(note, name, key);
  } catch (err) {
    problems.push({ message: `current checkpoint: ${(err as Error).message}` });
    return report(false);
  }
  const n = checkpoint.treeSize;

  // Rebuild the tree from contents; note each entry whose bytes differ from what was committed.
  const tree = new MerkleTree();
  // The leaves the server's tree holds, while every one is there: a checkpoint saved earlier
  // proves them (or not), and then names the first entry whose contents changed.
  let committed: MerkleTree | undefined = new MerkleTree();
  let expected = 0n;
  let gaps = false;
  const source = opts.tiles ? tileEntries(opts.tiles, n) : rpcEntries(client, opts.pageSize ?? 1000);
  for await (const e of source) {
    if (e.seq >= n) break; // later entries belong to a later checkpoint
    if (e.seq < expected) {
      problems.push({ seq: e.seq, message: "appears again or out of order" });
      continue;
    }
    if (e.seq > expected) {
      gaps = true;
      const last = e.seq - 1n;
      problems.push({
        seq: expected,
        message: last === expected ? "is missing (deleted from the log)" : `is missing, and so are the entries up to ${last} (deleted from the log)`,
      });
    }
    expected = e.seq + 1n;
    entries++;
    let leaf: Buffer;
    if (typeof e.leaf === "string") {
      problems.push({ seq: e.seq, message: `cannot be encoded: ${e.leaf}` });
      // Keeps later leaves in place; the root check then fails as it should.
      leaf = Buffer.alloc(32);
    } else leaf = e.leaf;
    if (e.committed.length === 0) {
      problems.push({ seq: e.seq, message: "is not in the server's tree (inserted behind the server's back)" });
    } else if (!leaf.equals(Buffer.from(e.committed))) {
      problems.push({ seq: e.seq, message: "does not match the leaf hash the log committed to when it was appended (changed, moved or inserted after the fact)" });
    }
    if (!gaps) {
      tree.append(leaf);
      if (e.committed.length === 32) committed?.append(e.committed);
      else committed = undefined;
    }
  }
  if (expected < n) {
    gaps = true;
    problems.push({ seq: expected, message: `is missing, and so are the entries up to ${n - 1n} (the signed checkpoint has ${n})` });
  }

  if (!gaps) {
    const root = tree.root(Number(n));
    if (!root.equals(checkpoint.rootHash)) {
      const named = problems.some((p) => p.seq !== undefined);
      problems.push({
        message: named
          ? "the entries' contents do not hash to the signed checkpoint's root (see the entries above)"
          : "the entries' contents do not hash to the signed checkpoint's root",
      });
    }
    if (opts.tiles && committed && !committed.root(Number(n)).equals(checkpoint.rootHash)) {
      problems.push({ message: "the log's level-0 tiles do not hash to the signed checkpoint's root" });
    }
    // Spot-check inclusion proofs from the server against the rebuilt leaves (with tiles, the
    // tiles are the proofs). Entries already named would only be named again.
    const flagged = new Set(problems.map((p) => p.seq));
    const samples = opts.tiles ? [] : sampleIndices(Number(n), opts.inclusionSamples ?? 8).filter((i) => !flagged.has(BigInt(i)));
    for (const i of samples) {
      const p = await client.getInclusionProof({ leafIndex: BigInt(i), treeSize: n });
      const r = rootFromInclusionProof(i, Number(n), tree.leaf(i), p.hashes);
      if (!r || !r.equals(checkpoint.rootHash)) problems.push({ seq: BigInt(i), message: `inclusion proof in the tree of size ${n} does not verify` });
    }
  }

  const prefixCheck = async (label: string, cp: ParsedCheckpoint): Promise<boolean> => {
    const m = cp.treeSize;
    const before = problems.length;
    if (m > n) {
      problems.push({ seq: n, message: `and later entries are gone: ${label} covers ${m} entries, the log now signs only ${n}` });
      return false;
    }
    if (m === 0n) return true;
    if (!gaps && !tree.root(Number(m)).equals(cp.rootHash)) {
      problems.push({ message: `the first ${m} entries no longer hash to the root of ${label}: history before entry ${m} was rewritten` });
      const proven = committed && committed.size >= Number(m) && committed.root(Number(m)).equals(cp.rootHash);
      problems.push(...(proven ? firstChanged(tree, committed!, Number(m), label) : await narrow(client, tree, name, key, m, Buffer.from(cp.rootHash))));
    }
    // (With tiles the rebuilt tree above is the whole check: no proof is asked of the server.)
    const proof = opts.tiles ? undefined : await client.getConsistencyProof({ firstTreeSize: m, secondTreeSize: n });
    if (proof && !verifyConsistency(Number(m), Number(n), cp.rootHash, checkpoint.rootHash, proof.hashes)) {
      problems.push({ message: `the current checkpoint (size ${n}) is not consistent with ${label} (size ${m}): the log was rewritten, not appended to` });
    }
    return problems.length === before;
  };

  if (opts.savedCheckpoint !== undefined) {
    let saved: ParsedCheckpoint | undefined;
    try {
      saved = openCheckpoint(opts.savedCheckpoint, name, key);
    } catch (err) {
      const why = err instanceof NoteError ? err.message : String(err);
      problems.push({ message: `saved checkpoint: ${why} (signed by another key, or the file was altered)` });
    }
    if (saved) {
      savedSize = saved.treeSize;
      await prefixCheck("the saved checkpoint", saved);
    }
  }

  const trusted = (opts.witnessKeys ?? []).map((k) => ({ vkey: k.trim(), ...parseCosignerKey(k) }));
  for (const w of opts.witnessed ?? []) {
    let cp: ParsedCheckpoint;
    try {
      cp = openCheckpoint(w.note, name, key);
    } catch (err) {
      problems.push({ message: `witness ${w.source}: its checkpoint is not the log's (${(err as Error).message})` });
      continue;
    }
    const signers = trusted.filter((t) => findCosignature(w.note, t.name, t.key) !== undefined);
    if (signers.length === 0) {
      problems.push({ message: `witness ${w.source}: no valid cosignature by a trusted witness key` });
      continue;
    }
    if (await prefixCheck(`the checkpoint witness ${w.source} cosigned`, cp)) for (const t of signers) witnesses.add(t.vkey);
  }
  const min = opts.minWitnesses ?? 0;
  if (witnesses.size < min) {
    problems.push({ message: `${witnesses.size} of the ${min} witnesses required cosigned a checkpoint this log extends` });
  }
  return report();
}

/**
 * The first entry whose contents no longer hash to the leaf the log committed to, when the
 * committed leaves are proven by a checkpoint's root: that entry is exactly the first change.
 */
function firstChanged(tree: MerkleTree, committed: MerkleTree, m: number, label: string): Problem[] {
  for (let i = 0; i < m; i++) {
    if (!tree.leaf(i).equals(committed.leaf(i))) {
      return [{ seq: BigInt(i), message: `is the first entry whose contents changed since ${label}: the leaves the log committed to still hash to its root, and this one no longer matches its contents` }];
    }
  }
  return [];
}

/**
 * Walks the server's older signed checkpoints down from a size known to be rewritten, to the
 * first one the rebuilt tree still matches: the rewritten entry lies between the two. Only
 * checkpoints whose signatures verify count, so this is as strong as the signing key is secret.
 */
async function narrow(
  client: Client<typeof AuditService>,
  tree: MerkleTree,
  name: string,
  key: Buffer,
  bad: bigint,
  badRoot: Buffer,
): Promise<Problem[]> {
  let lowestBad = bad;
  let fork: Problem | undefined;
  let pageToken = "";
  const found = async (): Promise<Problem> => {
    do {
      const page = await client.listCheckpoints({ maxTreeSize: bad, pageSize: 1000, pageToken });
      for (const c of page.checkpoints) {
        let cp: ParsedCheckpoint;
        try {
          cp = openCheckpoint(c.note, name, key);
        } catch {
          continue;
        }
        if (cp.treeSize === 0n || cp.treeSize > BigInt(tree.size)) continue;
        const matches = tree.root(Number(cp.treeSize)).equals(cp.rootHash);
        if (cp.treeSize >= lowestBad) {
          // Two different roots for one size, both signed by the log's key: a fork.
          if (cp.treeSize === bad && matches && !Buffer.from(cp.rootHash).equals(badRoot)) {
            fork = { message: `the log's key signed two different trees of ${bad} entries: the one checked here and the one it signs now (a fork: history was rewritten and signed again)` };
          }
          continue;
        }
        if (!matches) {
          lowestBad = cp.treeSize;
          continue;
        }
        const good = cp.treeSize;
        return lowestBad - good === 1n
          ? { seq: good, message: `was rewritten: the checkpoints signed at sizes ${good} and ${lowestBad} differ only by it, and the log now fails the second` }
          : {
              seq: good,
              message: `or a later entry up to ${lowestBad - 1n} was rewritten: the log still matches the checkpoint signed at size ${good}, not the one at ${lowestBad}`,
            };
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    return { seq: 0n, message: `or a later entry up to ${lowestBad - 1n} was rewritten (no older checkpoint matches, and the log's stored hashes were rewritten too)` };
  };
  const range = await found();
  return fork ? [range, fork] : [range];
}
/** An entry as read: its seq, the leaf recomputed from its contents (or why not), and the leaf committed to. */
interface ReadEntry {
  seq: bigint;
  leaf: Buffer | string;
  committed: Uint8Array;
}

/** The fields a leaf covers, as an AuditEntry message carries them (details_json parsed). */
export function messageContent(e: AuditEntry): EntryContent {
  return {
    seq: e.seq,
    time: e.time ? timestampDate(e.time) : new Date(0),
    kind: e.kind,
    agentId: e.agentId,
    tokenId: e.tokenId,
    actor: e.actor,
    reason: e.reason,
    details: JSON.parse(e.detailsJson) as { [key: string]: JsonValue },
    salt: e.salt,
  };
}

async function* rpcEntries(client: Client<typeof AuditService>, pageSize: number): AsyncGenerator<ReadEntry> {
  let pageToken = "";
  do {
    const page = await client.listEntries({ pageSize, pageToken });
    for (const e of page.entries) {
      let leaf: Buffer | string;
      try {
        leaf = leafHash(entryBytes(messageContent(e)));
      } catch (err) {
        leaf = (err as Error).message;
      }
      yield { seq: e.seq, leaf, committed: e.leafHash };
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
}

/** Entry bundles and level-0 tiles of a tree of n leaves. */
async function* tileEntries(get: (path: string) => Promise<Buffer>, n: bigint): AsyncGenerator<ReadEntry> {
  const size = Number(n);
  for (let k = 0; k * TILE_WIDTH < size; k++) {
    const width = Math.min(TILE_WIDTH, size - k * TILE_WIDTH);
    const [bundle, hashes] = await Promise.all([get(tilePath({ index: k, width })), get(tilePath({ level: 0, index: k, width }))]);
    const items = decodeEntryBundle(bundle);
    for (let i = 0; i < items.length; i++) {
      const seq = BigInt(k * TILE_WIDTH + i);
      yield { seq, leaf: leafHash(items[i]!), committed: hashes.subarray(i * 32, i * 32 + 32) };
    }
  }
}

function sampleIndices(n: number, k: number): number[] {
  if (n === 0) return [];
  const out = new Set<number>([0, n - 1]);
  for (let i = 1; i < k - 1; i++) out.add(Math.floor((i * (n - 1)) / (k - 1)));
  return [...out].sort((a, b) => a - b);
}

function sortProblems(ps: Problem[]): Problem[] {
  // Named entries first, in log order; then whole-log findings.
  return [...ps].sort((a, b) => {
    if (a.seq === undefined || b.seq === undefined) return a.seq === undefined ? (b.seq === undefined ? 0 : 1) : -1;
    return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;
  });
}
