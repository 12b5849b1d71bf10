import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { writePrivateFile } from "../lib/private-file.js";

// The first admin key must survive a start that fails after creating it (a port taken, a crash):
// it is written here, readable by its owner only, in the same step that stores its hash, and shown
// from here once the server is up.

export const ADMIN_KEY_FILE = "admin-key";

export function adminKeyPath(dataDir: string): string {
  return join(dataDir, ADMIN_KEY_FILE);
}

export async function keepAdminKey(dataDir: string, secret: string): Promise<void> {
  writePrivateFile(adminKeyPath(dataDir), `${secret}\n`);
}

/** The kept key, if there is one. */
export async function keptAdminKey(dataDir: string): Promise<string | undefined> {
  const text = await readFile(adminKeyPath(dataDir), "utf8").catch(() => undefined);
  return text?.trim() || undefined;
}

export async function dropAdminKey(dataDir: string): Promise<void> {
  await rm(adminKeyPath(dataDir), { force: true });
}
