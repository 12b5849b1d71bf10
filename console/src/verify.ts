import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { AuditEntry } from "../../gen/agentid/v1/audit_pb.js";
import type { Api } from "./api.js";
import { canonicalJson, type JsonValue as Json } from "../../src/audit/canonical-json.js";

// Checks an audit entry in the browser, trusting nothing but the server's published key:
// the leaf hash is recomputed from the entry's fields, an inclusion proof leads from it to a
// root, and that root must be the one in a checkpoint whose Ed25519 signature verifies with Web
// Crypto. The formats are those of src/audit/encoding.ts, merkle.ts and note.ts (documented in
// docs/transparency-log.md); this is their browser twin, with no node:crypto (the canonical JSON
// is the server's own, which imports nothing).

const enc = new TextEncoder();

async function sha256(...parts: Uint8Array[]): Promise<Uint8Array> {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
}

export async function leafHashOf(e: AuditEntry): Promise<Uint8Array> {
  const bytes = canonicalJson({
    actor: e.actor,
    agent_id: e.agentId,
    details: JSON.parse(e.detailsJson) as Json,
    kind: e.kind,
    reason: e.reason,
    // Entries from before salts have no salt key.
    ...(e.salt ? { salt: e.salt } : {}),
    seq: Number(e.seq),
    time: (e.time ? timestampDate(e.time) : new Date(0)).toISOString(),
    token_id: e.tokenId,
  });
  return sha256(new Uint8Array([0]), enc.encode(bytes));
}

/** RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or undefined if it is malformed. */
export async function rootFromInclusionProof(index: bigint, size: bigint, leaf: Uint8Array, proof: readonly Uint8Array[]): Promise<Uint8Array | undefined> {
  if (index < 0n || index >= size) return undefined;
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  const one = new Uint8Array([1]);
  for (const p of proof) {
    if (sn === 0n) return undefined;
    if (fn % 2n === 1n || fn === sn) {
      r = await sha256(one, p, r);
      while (fn % 2n === 0n && fn !== 0n) {
        fn /= 2n;
        sn /= 2n;
      }
    } else {
      r = await sha256(one, r, p);
    }
    fn /= 2n;
    sn /= 2n;
  }
  return sn === 0n ? r : undefined;
}

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** The signed-note key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || key). */
async function keyId(name: string, publicKey: Uint8Array): Promise<Uint8Array> {
  return (await sha256(enc.encode(`${name}\n`), new Uint8Array([1]), publicKey)).subarray(0, 4);
}

export interface CheckedNote {
  origin: string;
  treeSize: bigint;
  rootHash: Uint8Array;
}

/** Parses a checkpoint note and checks its Ed25519 signature by (name, publicKey) with Web Crypto. */
export async function openCheckpoint(note: string, name: string, publicKey: Uint8Array): Promise<CheckedNote> {
  const split = note.indexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) throw new Error("not a signed note");
  const body = note.slice(0, split + 1);
  const [origin, sizeText, rootText] = body.split("\n");
  if (!origin || !sizeText || !/^(0|[1-9][0-9]{0,18})$/.test(sizeText) || !rootText) throw new Error("malformed checkpoint body");
  const rootHash = unb64(rootText);
  if (rootHash.length !== 32 || b64(rootHash) !== rootText) throw new Error("bad root hash line");
  const id = await keyId(name, publicKey);
  const key = await crypto.subtle.importKey("raw", publicKey as BufferSource, { name: "Ed25519" }, false, ["verify"]);
  let signed = false;
  for (const line of note.slice(split + 2, -1).split("\n")) {
    if (!line.startsWith("\u2014 ")) throw new Error(`bad signature line ${JSON.stringify(line)}`);
    const [signer, sig64] = line.slice(2).split(" ");
    const raw = unb64(sig64 ?? "");
    if (signer !== name || raw.length !== 68 || !equal(raw.subarray(0, 4), id)) continue;
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, raw.subarray(4) as BufferSource, enc.encode(body)))) {
      throw new Error(`the signature by ${name} does not verify`);
    }
    signed = true;
  }
  if (!signed) throw new Error(`no signature by ${name}+${hex(id)}`);
  return { origin, treeSize: BigInt(sizeText), rootHash };
}

export interface Step {
  label: string;
  ok: boolean;
  detail: string;
}

export interface Verification {
  ok: boolean;
  steps: Step[];
}

/**
 * Verifies that the entry is in the log the server signed. A step that fails ends the check;
 * its detail says what did not match.
 */
export async function verifyEntry(api: Api, entry: AuditEntry): Promise<Verification> {
  const steps: Step[] = [];
  const done = (ok: boolean) => ({ ok, steps });
  const pk = await api.audit.getPublicKey({});
  const id = await keyId(pk.origin, pk.publicKey);
  const expectedVkey = `${pk.origin}+${hex(id)}+${b64(new Uint8Array([1, ...pk.publicKey]))}`;
  const vkeyOk = pk.publicKey.length === 32 && expectedVkey === pk.verifierKey;
  steps.push({ label: "Log key", ok: vkeyOk, detail: vkeyOk ? pk.verifierKey : `published key ${pk.verifierKey} does not match its raw key` });
  if (!vkeyOk) return done(false);

  const leaf = await leafHashOf(entry);
  const leafOk = equal(leaf, entry.leafHash);
  steps.push({
    label: "Leaf hash",
    ok: leafOk,
    detail: leafOk ? `recomputed from the entry's fields: ${hex(leaf)}` : `the entry's fields hash to ${hex(leaf)}, the log committed to ${hex(entry.leafHash)}`,
  });
  if (!leafOk) return done(false);

  // Checkpoints are signed at least every second while entries arrive: wait briefly for one
  // that covers a brand-new entry.
  let checkpoint: CheckedNote | undefined;
  for (let i = 0; i < 20; i++) {
    const res = await api.audit.getCheckpoint({});
    try {
      checkpoint = await openCheckpoint(res.checkpoint?.note ?? "", pk.origin, pk.publicKey);
    } catch (err) {
      steps.push({ label: "Checkpoint signature", ok: false, detail: (err as Error).message });
      return done(false);
    }
    if (checkpoint.treeSize > entry.seq) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  if (!checkpoint || checkpoint.treeSize <= entry.seq) {
    steps.push({ label: "Checkpoint signature", ok: false, detail: `no signed checkpoint covers entry ${entry.seq} yet; try again in a moment` });
    return done(false);
  }
  steps.push({
    label: "Checkpoint signature",
    ok: true,
    detail: `Ed25519 signature by ${pk.origin} verifies (Web Crypto) over tree size ${checkpoint.treeSize}, root ${hex(checkpoint.rootHash)}`,
  });

  const proof = await api.audit.getInclusionProof({ leafIndex: entry.seq, treeSize: checkpoint.treeSize });
  const root = await rootFromInclusionProof(entry.seq, checkpoint.treeSize, leaf, proof.hashes);
  const rootOk = root !== undefined && equal(root, checkpoint.rootHash);
  steps.push({
    label: "Inclusion proof",
    ok: rootOk,
    detail: rootOk
      ? `${proof.hashes.length} hashes lead from entry ${entry.seq} to the signed root`
      : `the proof leads to ${root ? hex(root) : "nothing (malformed)"}, not the signed root`,
  });
  return done(rootOk);
}
