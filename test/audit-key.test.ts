import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import pg from "pg";
import { createClient } from "@connectrpc/connect";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { openDatabase } from "../src/store/open.js";
import { rawPublicKey } from "../src/audit/note.js";
import { parseSigningKey } from "../src/audit/note.js";
import { createTestDatabase, startHarness, type Harness } from "./support/harness.js";
import { dataDirFor } from "../bench/lib/cluster.js";

// The checkpoint signing key lives outside the database it signs.

const open: Harness[] = [];
afterEach(async () => {
  for (const h of open.splice(0)) await h.close();
});

async function rows(url: string, query: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(query)).rows;
  } finally {
    await c.end();
  }
}

describe("the audit signing key", () => {
  it("is created in a file of the data folder readable by its owner only, and never stored in the database", async () => {
    const h = await startHarness();
    open.push(h);
    const file = join(dataDirFor(h.databaseUrl), "audit-signing-key.pem");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const key = await createClient(AuditService, h.grpcTransport).getPublicKey({});
    expect(rawPublicKey(parseSigningKey(await readFile(file, "utf8")))).toEqual(Buffer.from(key.publicKey));
    expect(await rows(h.databaseUrl, "select * from audit_keys")).toEqual([]);
  });

  it("is moved out of a database that holds one, by replicas starting at once, and removed from it", async () => {
    const url = await createTestDatabase();
    const { db } = await openDatabase(url, 2);
    const pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const pub = rawPublicKey(parseSigningKey(pem));
    await db.insertInto("audit_keys").values({ private_key_pem: pem, public_key: pub }).execute();
    await db.destroy();

    const replicas = await Promise.all([startHarness({ databaseUrl: url }), startHarness({ databaseUrl: url })]);
    open.push(...replicas);
    for (const r of replicas) {
      const key = await createClient(AuditService, r.grpcTransport).getPublicKey({});
      expect(Buffer.from(key.publicKey)).toEqual(pub);
    }
    expect(await rows(url, "select * from audit_keys")).toEqual([]);
    expect(await readFile(join(dataDirFor(url), "audit-signing-key.pem"), "utf8")).toBe(pem);
  });

  it("a replica without the log's key refuses to start rather than sign with a key of its own", async () => {
    const h = await startHarness();
    open.push(h);
    await createClient(AuditService, h.grpcTransport).getCheckpoint({});
    const elsewhere = await mkdtemp(join(tmpdir(), "agentid-other-data-"));
    try {
      await expect(startHarness({ databaseUrl: h.databaseUrl, config: { dataDir: elsewhere } })).rejects.toThrow(
        /checkpoints are not signed by this server's key .*give every replica the log's key/,
      );
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});
