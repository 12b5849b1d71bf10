import type { Db, Role } from "../store/database.js";
import { insertAdminKeyIfNone, insertApiKey, listApiKeys, revokeApiKey, type ApiKeyRecord } from "../store/api-keys.js";
import { invalidArgument, notFound } from "./errors.js";
import { API_KEY_PREFIX, hashSecret, newKeyId, newSecret } from "./ids.js";

/**
 * Makes sure an admin can log in. With a configured key, installs it (once); otherwise creates a
 * key when no live admin key exists, and returns it so the caller can show it once.
 */
export async function bootstrapAdminKey(db: Db, configured: string): Promise<string | undefined> {
  if (configured) {
    await insertAdminKeyIfNone(db, { id: newKeyId(), keyHash: hashSecret(configured), onlyIfNoAdmin: false });
    return undefined;
  }
  const secret = newSecret(API_KEY_PREFIX);
  const created = await insertAdminKeyIfNone(db, { id: newKeyId(), keyHash: hashSecret(secret), onlyIfNoAdmin: true });
  return created ? secret : undefined;
}

export async function createApiKey(
  db: Db,
  k: { name: string; role: Role; audiences: string[]; createdBy: string },
): Promise<{ key: ApiKeyRecord; secret: string }> {
  if (k.role === "resource_server" && k.audiences.length === 0) {
    throw invalidArgument("audiences", "a resource server key needs at least one audience");
  }
  if (k.role !== "resource_server" && k.audiences.length > 0) {
    throw invalidArgument("audiences", "only resource server keys are bound to audiences");
  }
  const secret = newSecret(API_KEY_PREFIX);
  const key = await insertApiKey(db, { id: newKeyId(), keyHash: hashSecret(secret), ...k });
  return { key, secret };
}

export { listApiKeys };

export async function revokeKey(db: Db, id: string): Promise<ApiKeyRecord> {
  const key = await revokeApiKey(db, id);
  if (!key) throw notFound(`API key ${id}`);
  return key;
}
