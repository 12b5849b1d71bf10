import type { Db, Role } from "../store/database.js";
import { findApiKey, insertAdminKeyIfNone, insertApiKey, listApiKeys, lockActiveAdminKeys, revokeApiKey, type ApiKeyRecord } from "../store/api-keys.js";
import { appendAuditEntry, auditedTransaction } from "../audit/append.js";
import { failedPrecondition, invalidArgument, notFound } from "./errors.js";
import { API_KEY_PREFIX, hashSecret, newKeyId, newSecret } from "./ids.js";
import type { LogWaker } from "../store/sequencer.js";

/**
 * Makes sure an admin can log in. With a configured key, installs it (once); otherwise creates a
 * key when no live admin key exists, and returns it so the caller can show it once. `keep` saves a
 * created key before its hash commits, so that no failure can leave an admin key nobody holds.
 */
export async function bootstrapAdminKey(
  db: Db,
  logs: LogWaker,
  configured: string,
  keep: (secret: string) => Promise<void> = async () => {},
): Promise<string | undefined> {
  const secret = configured || newSecret(API_KEY_PREFIX);
  const id = newKeyId();
  const created = await db.transaction().execute(async (tx) => {
    const inserted = await insertAdminKeyIfNone(tx, { id, keyHash: hashSecret(secret), onlyIfNoAdmin: !configured });
    if (inserted) {
      await appendAuditEntry(tx, { kind: "key.created", actor: "bootstrap", details: { key_id: id, name: "bootstrap admin", role: "admin", audiences: [] } });
      if (!configured) await keep(secret);
    }
    return inserted;
  });
  if (created) logs.wake("audit");
  return created && !configured ? secret : undefined;
}

export async function createApiKey(
  db: Db,
  logs: LogWaker,
  k: { name: string; role: Role; audiences: string[]; createdBy: string },
): Promise<{ key: ApiKeyRecord; secret: string }> {
  if (k.role === "resource_server" && k.audiences.length === 0) {
    throw invalidArgument("audiences", "a resource server key needs at least one audience");
  }
  if (k.role !== "resource_server" && k.audiences.length > 0) {
    throw invalidArgument("audiences", "only resource server keys are bound to audiences");
  }
  const secret = newSecret(API_KEY_PREFIX);
  const key = await auditedTransaction(db, logs, async (tx) => {
    const key = await insertApiKey(tx, { id: newKeyId(), keyHash: hashSecret(secret), ...k });
    await appendAuditEntry(tx, {
      kind: "key.created",
      actor: k.createdBy,
      details: { key_id: key.id, name: key.name, role: key.role, audiences: key.audiences },
    });
    return key;
  });
  return { key, secret };
}

export { listApiKeys };

/**
 * Revokes once; repeating it is not an error and logs nothing more. The last active admin key is
 * not revoked: nobody could manage keys afterwards.
 */
export function revokeKey(db: Db, logs: LogWaker, id: string, actor: string): Promise<ApiKeyRecord> {
  return auditedTransaction(db, logs, async (tx) => {
    const admins = await lockActiveAdminKeys(tx);
    if (admins.length === 1 && admins[0] === id) {
      throw failedPrecondition(
        `${id} is the last active admin key: revoking it would leave nobody able to manage keys. ` +
          `Create another admin key first (agentid key create --role admin), then revoke this one`,
      );
    }
    const { key, changed } = (await revokeApiKey(tx, id)) ?? {};
    if (!key) throw notFound(`API key ${id}`);
    if (changed) await appendAuditEntry(tx, { kind: "key.revoked", actor, details: { key_id: key.id, name: key.name, role: key.role } });
    return key;
  });
}

export async function getApiKey(db: Db, id: string): Promise<ApiKeyRecord> {
  const key = await findApiKey(db, id);
  if (!key) throw notFound(`API key ${id}`);
  return key;
}
