import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { publicKey, startHarness, type Harness } from "./support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

/** Every text rendering of every row of every table in the database. */
async function dumpDatabase(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ name: string }>(
      "select quote_ident(table_name) as name from information_schema.tables where table_schema = 'public'",
    );
    let out = "";
    for (const t of tables) {
      const { rows } = await client.query(`select t::text as row from ${t.name} t`);
      out += rows.map((r: { row: string }) => r.row).join("\n");
    }
    return out;
  } finally {
    await client.end();
  }
}

describe("tokens are secrets", () => {
  it("never reach the database, the logs, or the feed; only their SHA-256 is stored", async () => {
    const { agent } = await h.grpc.agents.registerAgent({ name: "secretive", publicKey: publicKey(), allowedScopes: ["a"] });
    const issued = await Promise.all([1, 2, 3].map(() => h.connect.tokens.issue({ agentId: agent!.agentId, scopes: ["a"] })));
    for (const t of issued) await h.grpc.tokens.introspect({ token: t.token, requiredScope: "b" });
    await h.grpc.tokens.revoke({ target: { case: "token", value: issued[0]!.token }, reason: "by token" });
    await h.connect.tokens.revoke({ target: { case: "token", value: issued[1]!.token }, reason: "by token" });
    const events: string[] = [];
    for await (const m of h.grpc.revocations.watchRevocations({ afterRevision: 0n })) {
      for (const e of m.events) events.push(JSON.stringify(e, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
      if (m.progress) break;
    }
    expect(events.length).toBeGreaterThanOrEqual(2);

    const dump = await dumpDatabase(h.databaseUrl);
    const logs = h.logs.join("\n");
    const { createHash } = await import("node:crypto");
    for (const { token, tokenId } of issued) {
      const body = token.slice(3);
      expect(dump).not.toContain(body);
      expect(logs).not.toContain(body);
      expect(events.join("\n")).not.toContain(body);
      expect(dump).toContain(tokenId);
      // The stored form: SHA-256, which bytea renders as hex.
      expect(dump).toContain(createHash("sha256").update(token).digest("hex"));
    }
    // The logs did record the activity, by token id.
    expect(logs).toContain(issued[0]!.tokenId);
  });
});
