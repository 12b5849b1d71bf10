import { generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "pino";
import type { Db } from "../store/database.js";
import { deleteStoredSigningKey, readStoredSigningKey } from "../store/audit.js";
import { parseSigningKey } from "./note.js";
import { readIfExists, writePrivateFile } from "../lib/private-file.js";

// The checkpoint signing key never lives in the database it signs: whoever can write the
// database could otherwise sign a rewritten log. It comes from AGENTID_AUDIT_SIGNING_KEY, or
// from a file readable by its owner only (AGENTID_AUDIT_KEY_FILE, default in the data folder).

export interface SigningKeySource {
  /** PKCS#8 PEM or base64 DER from the configuration; empty: the key file. */
  configured: string;
  /** Where the key is kept when not configured; created on first start. */
  file: string;
}

/** Writes `text` to `file` only if no file is there yet, atomically; returns what the file holds. */
function writeOnce(file: string, text: string): string {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600, flag: "wx" });
  try {
    // link() fails if the name exists: of replicas starting at once, one key wins.
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  } finally {
    unlinkSync(tmp);
  }
  return readFileSync(file, "utf8");
}

function parse(pem: string, where: string): KeyObject {
  try {
    return parseSigningKey(pem);
  } catch (err) {
    // Never echo the key itself.
    throw new Error(`${where} is not an Ed25519 PKCS#8 key (PEM, or base64 DER): ${(err as Error).message}`);
  }
}

/**
 * The signing key. A key found in the database (kept there by earlier versions) is moved to the
 * key file, unless one is configured, and removed from the database.
 */
export async function loadSigningKey(db: Db, src: SigningKeySource, logger: Logger): Promise<KeyObject> {
  const inDatabase = await readStoredSigningKey(db);
  let pem: string;
  let where: string;
  if (src.configured) {
    pem = src.configured;
    where = "AGENTID_AUDIT_SIGNING_KEY";
    if (inDatabase) {
      const kept = parse(inDatabase, "the signing key stored in audit_keys");
      // Not lost: an operator may still need it, e.g. to check old checkpoints.
      writeOnce(`${src.file}.from-database`, inDatabase);
      logger.warn(
        { file: `${src.file}.from-database`, sameKey: kept.equals(parse(pem, where)) },
        "moved the audit signing key found in the database to a file; AGENTID_AUDIT_SIGNING_KEY is used",
      );
    }
  } else {
    where = `the audit key file ${src.file}`;
    const existing = readIfExists(src.file);
    if (existing) pem = existing;
    else if (inDatabase) {
      pem = writeOnce(src.file, inDatabase);
      logger.warn({ file: src.file }, "moved the audit signing key out of the database into its key file");
    } else {
      const { privateKey } = generateKeyPairSync("ed25519");
      pem = writeOnce(src.file, privateKey.export({ type: "pkcs8", format: "pem" }).toString());
      logger.info({ file: src.file }, "created the audit signing key");
    }
  }
  const key = parse(pem, where);
  if (inDatabase) await deleteStoredSigningKey(db);
  return key;
}

/**
 * The last checkpoint this server signed, kept outside the database (in the data folder), so a
 * rewrite of the database cannot make the server forget what it already signed.
 */
export class CheckpointRecord {
  constructor(readonly file: string) {}

  read(): string | undefined {
    return readIfExists(this.file);
  }

  /** Replaces the record atomically. */
  write(note: string): void {
    writePrivateFile(this.file, note);
  }
}
