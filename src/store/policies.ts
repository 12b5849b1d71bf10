import type { Db, PolicyKind } from "./database.js";

export interface PolicyRecord {
  name: string;
  kind: PolicyKind;
  threshold: number;
  windowSeconds: number | null;
  createdAt: Date;
  createdBy: string;
}

const columns = ["name", "kind", "threshold", "window_seconds", "created_at", "created_by"] as const;

function toRecord(r: {
  name: string;
  kind: PolicyKind;
  threshold: number;
  window_seconds: number | null;
  created_at: Date;
  created_by: string;
}): PolicyRecord {
  return {
    name: r.name,
    kind: r.kind,
    threshold: r.threshold,
    windowSeconds: r.window_seconds,
    createdAt: r.created_at,
    createdBy: r.created_by,
  };
}

/** Returns undefined when a policy with that name exists. */
export async function insertPolicy(
  db: Db,
  p: { name: string; kind: PolicyKind; threshold: number; windowSeconds: number | null; createdBy: string },
): Promise<PolicyRecord | undefined> {
  const row = await db
    .insertInto("policies")
    .values({ name: p.name, kind: p.kind, threshold: p.threshold, window_seconds: p.windowSeconds, created_by: p.createdBy })
    .onConflict((oc) => oc.column("name").doNothing())
    .returning(columns)
    .executeTakeFirst();
  return row && toRecord(row);
}

export async function listPolicies(db: Db): Promise<PolicyRecord[]> {
  return (await db.selectFrom("policies").select(columns).orderBy("name").execute()).map(toRecord);
}

export async function deletePolicy(db: Db, name: string): Promise<boolean> {
  const r = await db.deleteFrom("policies").where("name", "=", name).executeTakeFirst();
  return r.numDeletedRows > 0n;
}
