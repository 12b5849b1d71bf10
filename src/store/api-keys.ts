import { sql } from "kysely";
import type { Db, Role, Tx } from "./database.js";

export interface ApiKeyRecord {
  id: string;
  name: string;
  role: Role;
  audiences: string[];
  createdAt: Date;
  createdBy: string;
  revokedAt: Date | null;
}

const columns = ["id", "name", "role", "audiences", "created_at", "created_by", "revoked_at"] as const;

function toRecord(r: {
  id: string;
  name: string;
  role: Role;
  audiences: string[];
  created_at: Date;
  created_by: string;
  revoked_at: Date | null;
}): ApiKeyRecord {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    audiences: r.audiences,
    createdAt: r.created_at,
    createdBy: r.created_by,
    revokedAt: r.revoked_at,
  };
}

export async function insertApiKey(
  db: Db,
  k: { id: string; keyHash: Uint8Array; name: string; role: Role; audiences: string[]; createdBy: string },
): Promise<ApiKeyRecord> {
  const row = await db
    .insertInto("api_keys")
    .values({
      id: k.id,
      key_hash: Buffer.from(k.keyHash),
      name: k.name,
      role: k.role,
      audiences: k.audiences,
      created_by: k.createdBy,
    })
    .returning(columns)
    .executeTakeFirstOrThrow();
  return toRecord(row);
}

/** The live (unrevoked) key with this hash. */
export async function findActiveKeyByHash(db: Db, keyHash: Uint8Array): Promise<ApiKeyRecord | undefined> {
  const row = await db
    .selectFrom("api_keys")
    .select(columns)
    .where("key_hash", "=", Buffer.from(keyHash))
    .where("revoked_at", "is", null)
    .executeTakeFirst();
  return row && toRecord(row);
}

export async function findApiKey(db: Db, id: string): Promise<ApiKeyRecord | undefined> {
  const row = await db.selectFrom("api_keys").select(columns).where("id", "=", id).executeTakeFirst();
  return row && toRecord(row);
}

export async function listApiKeys(db: Db): Promise<ApiKeyRecord[]> {
  const rows = await db.selectFrom("api_keys").select(columns).orderBy("created_at").orderBy("id").execute();
  return rows.map(toRecord);
}

/** Revokes once; a second call returns the key as it is, with changed false. */
export async function revokeApiKey(tx: Tx, id: string): Promise<{ key: ApiKeyRecord; changed: boolean } | undefined> {
  const r = await tx.updateTable("api_keys").set({ revoked_at: sql<Date>`now()` }).where("id", "=", id).where("revoked_at", "is", null).executeTakeFirst();
  const row = await tx.selectFrom("api_keys").select(columns).where("id", "=", id).executeTakeFirst();
  return row && { key: toRecord(row), changed: r.numUpdatedRows > 0n };
}

/**
 * Inserts the bootstrap admin key unless a live admin key exists (or this very key does). An
 * advisory lock keeps replicas starting together from each creating one.
 */
export async function insertAdminKeyIfNone(
  tx: Tx,
  k: { id: string; keyHash: Uint8Array; onlyIfNoAdmin: boolean },
): Promise<boolean> {
  {
    await sql`select pg_advisory_xact_lock(hashtext('agentid:bootstrap-admin'))`.execute(tx);
    const existing = await tx
      .selectFrom("api_keys")
      .select("id")
      .where((eb) =>
        k.onlyIfNoAdmin
          ? eb.and([eb("role", "=", "admin"), eb("revoked_at", "is", null)])
          : eb("key_hash", "=", Buffer.from(k.keyHash)),
      )
      .executeTakeFirst();
    if (existing) return false;
    await tx
      .insertInto("api_keys")
      .values({ id: k.id, key_hash: Buffer.from(k.keyHash), name: "bootstrap admin", role: "admin", created_by: "bootstrap" })
      .execute();
    return true;
  }
}
