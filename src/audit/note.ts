import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";

// Checkpoints are C2SP signed notes (the format of Go's golang.org/x/mod/sumdb/note and the
// transparency-dev tlog-checkpoint spec), documented in docs/transparency-log.md:
//
//   <origin>\n<tree size>\n<base64 root hash>\n\n— <key name> <base64(key id || signature)>\n
//
// The signature is Ed25519 over the body (the first three lines, each with its "\n"). The key id
// is the first 4 bytes of SHA-256(key name || "\n" || 0x01 || public key).

const ED25519_ALG = 0x01;
const SIG_PREFIX = "\u2014 ";
// SPKI DER of an Ed25519 key is this fixed header followed by the 32 raw bytes.
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export interface CheckpointBody {
  origin: string;
  treeSize: bigint;
  rootHash: Uint8Array;
}

export function checkpointBody(c: CheckpointBody): string {
  return `${c.origin}\n${c.treeSize}\n${Buffer.from(c.rootHash).toString("base64")}\n`;
}

export function keyId(name: string, publicKey: Uint8Array): Buffer {
  return createHash("sha256")
    .update(`${name}\n`)
    .update(Buffer.from([ED25519_ALG]))
    .update(publicKey)
    .digest()
    .subarray(0, 4);
}

export function verifierKey(name: string, publicKey: Uint8Array): string {
  return `${name}+${keyId(name, publicKey).toString("hex")}+${Buffer.concat([Buffer.from([ED25519_ALG]), publicKey]).toString("base64")}`;
}

export function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: "der", type: "spki" });
}

export function rawPublicKey(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: "spki", format: "der" }).subarray(-32);
}

/** Parses a signing key given as PKCS#8 PEM, or base64 of PKCS#8 DER. */
export function parseSigningKey(text: string): KeyObject {
  const trimmed = text.trim();
  const key = trimmed.startsWith("-----BEGIN")
    ? createPrivateKey(trimmed)
    : createPrivateKey({ key: Buffer.from(trimmed, "base64"), format: "der", type: "pkcs8" });
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`expected an Ed25519 key, got ${key.asymmetricKeyType}`);
  return key;
}

export class NoteSigner {
  readonly publicKey: Buffer;
  private readonly id: Buffer;

  constructor(
    readonly name: string,
    private readonly key: KeyObject,
  ) {
    this.publicKey = rawPublicKey(key);
    this.id = keyId(name, this.publicKey);
  }

  get verifierKey(): string {
    return verifierKey(this.name, this.publicKey);
  }

  sign(body: string): string {
    const sig = sign(null, Buffer.from(body, "utf8"), this.key);
    return `${body}\n${SIG_PREFIX}${this.name} ${Buffer.concat([this.id, sig]).toString("base64")}\n`;
  }
}

export interface ParsedCheckpoint extends CheckpointBody {
  note: string;
  /** The signature line that verified (a note may carry other lines under the same name). */
  signature: string;
}

export class NoteError extends Error {}

/**
 * Parses a checkpoint note and checks it carries a valid signature by (name, publicKey).
 * Throws NoteError saying what is wrong.
 */
export function openCheckpoint(note: string, name: string, publicKey: Uint8Array): ParsedCheckpoint {
  const split = note.indexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) throw new NoteError("not a signed note (no blank line before the signatures)");
  const body = note.slice(0, split + 1);
  const lines = body.split("\n").slice(0, -1);
  if (lines.length < 3) throw new NoteError("checkpoint body needs origin, tree size and root hash lines");
  const [origin, sizeText, rootText] = lines as [string, string, string];
  if (!/^(0|[1-9][0-9]{0,18})$/.test(sizeText)) throw new NoteError(`bad tree size line ${JSON.stringify(sizeText)}`);
  const rootHash = Buffer.from(rootText, "base64");
  if (rootHash.length !== 32 || rootHash.toString("base64") !== rootText) throw new NoteError("bad root hash line");
  const id = keyId(name, publicKey);
  const key = publicKeyObject(publicKey);
  let signature: string | undefined;
  for (const line of note.slice(split + 2, -1).split("\n")) {
    if (!line.startsWith(SIG_PREFIX)) throw new NoteError(`bad signature line ${JSON.stringify(line)}`);
    const [signer, b64] = line.slice(SIG_PREFIX.length).split(" ");
    const raw = Buffer.from(b64 ?? "", "base64");
    if (signer !== name || raw.length !== 68 || !raw.subarray(0, 4).equals(id)) continue;
    if (!verify(null, Buffer.from(body, "utf8"), key, raw.subarray(4))) throw new NoteError(`signature by ${name} does not verify`);
    signature = line;
  }
  if (!signature) throw new NoteError(`no signature by key ${verifierKey(name, publicKey)}`);
  return { origin, treeSize: BigInt(sizeText), rootHash, note, signature };
}

// Witness cosignatures, C2SP tlog-cosignature (Ed25519, "cosignature/v1"): a note signature
// line whose key id uses the type byte 0x04, and whose signature is a big-endian u64 timestamp
// followed by an Ed25519 signature over
//   "cosignature/v1\ntime <timestamp>\n" || the checkpoint body.

const COSIGNATURE_ALG = 0x04;

export function cosignerKeyId(name: string, publicKey: Uint8Array): Buffer {
  return createHash("sha256")
    .update(`${name}\n`)
    .update(Buffer.from([COSIGNATURE_ALG]))
    .update(publicKey)
    .digest()
    .subarray(0, 4);
}

/** A cosigner's verifier key: <name>+<hex key id>+<base64(0x04 || public key)>. */
export function cosignerVerifierKey(name: string, publicKey: Uint8Array): string {
  return `${name}+${cosignerKeyId(name, publicKey).toString("hex")}+${Buffer.concat([Buffer.from([COSIGNATURE_ALG]), publicKey]).toString("base64")}`;
}

/** Parses a cosigner verifier key (type 0x04). */
export function parseCosignerKey(vkey: string): { name: string; key: Buffer } {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim());
  const raw = Buffer.from(m?.[3] ?? "", "base64");
  if (!m || raw.length !== 33 || raw[0] !== COSIGNATURE_ALG) throw new NoteError(`not an Ed25519 cosigner (witness) key: ${vkey}`);
  const name = m[1]!;
  const key = raw.subarray(1);
  if (cosignerVerifierKey(name, key) !== vkey.trim()) throw new NoteError(`witness key id does not match its key: ${vkey}`);
  return { name, key };
}

function cosignedMessage(body: string, timestamp: bigint): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${timestamp}\n${body}`, "utf8");
}

/** The body of a note: everything up to and including the line before the blank line. */
export function noteBody(note: string): string {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new NoteError("not a signed note (no blank line before the signatures)");
  return note.slice(0, split + 1);
}

export class Cosigner {
  readonly publicKey: Buffer;
  private readonly id: Buffer;

  constructor(
    readonly name: string,
    private readonly key: KeyObject,
  ) {
    this.publicKey = rawPublicKey(key);
    this.id = cosignerKeyId(name, this.publicKey);
  }

  get verifierKey(): string {
    return cosignerVerifierKey(this.name, this.publicKey);
  }

  /** A cosignature line (with its "\n") over the note's body, at `time` (seconds). */
  cosign(note: string, time = BigInt(Math.floor(Date.now() / 1000))): string {
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(time);
    const sig = sign(null, cosignedMessage(noteBody(note), time), this.key);
    return `${SIG_PREFIX}${this.name} ${Buffer.concat([this.id, ts, sig]).toString("base64")}\n`;
  }
}

/** The timestamp of a valid cosignature by (name, publicKey) on the note, if it carries one. */
export function findCosignature(note: string, name: string, publicKey: Uint8Array): bigint | undefined {
  const body = noteBody(note);
  const id = cosignerKeyId(name, publicKey);
  const key = publicKeyObject(publicKey);
  for (const line of note.slice(body.length + 1).split("\n")) {
    if (!line.startsWith(`${SIG_PREFIX}${name} `)) continue;
    const raw = Buffer.from(line.slice(SIG_PREFIX.length + name.length + 1), "base64");
    if (raw.length !== 76 || !raw.subarray(0, 4).equals(id)) continue;
    const time = raw.readBigUInt64BE(4);
    if (verify(null, cosignedMessage(body, time), key, raw.subarray(12))) return time;
  }
  return undefined;
}
