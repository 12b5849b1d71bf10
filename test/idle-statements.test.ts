import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { createTestDatabase, publicKey, startHarness, type Harness } from "./support/harness.js";
import { countStatements, type StatementCounter } from "./support/pg-count.js";

// An idle replica's background loops and the database: every statement the server sends to
// PostgreSQL goes through a counting proxy. The sequencer's safety tick (both logs) and the
// transparency log's checkpoint timer are this file's subject; the feed's own bookmark read
// (it reads the log head every second to promise freshness) is counted and shown apart.

let counter: StatementCounter;
let h: Harness;
beforeAll(async () => {
  counter = await countStatements(await createTestDatabase());
  h = await startHarness({ databaseUrl: counter.url });
});
afterAll(async () => {
  await h?.close();
  await counter?.close();
});

const isFeedRead = (s: string) => /feed_compaction/.test(s);
// Sent once by each new pool connection (src/store/open.ts), not on any request's behalf: a
// Revoke that finds no idle connection (the pool drops idle ones after 10 s) opens one.
const isConnectionSetup = (s: string) => s === "set jit = off";

describe("an idle replica", () => {
  it("issues no more than one statement per second from its background loops", async () => {
    // Settle: the first checkpoint is signed after start.
    await new Promise((r) => setTimeout(r, 2500));
    const from = counter.statements.length;
    const seconds = 11;
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const sent = counter.statements.slice(from).filter((s) => !isConnectionSetup(s));
    const feed = sent.filter(isFeedRead);
    const others = sent.filter((s) => !isFeedRead(s));
    // The sequencer: one pass per log per 10 s safety tick; the checkpoint timer: nothing while
    // no entry is numbered.
    expect(others.length, `statements other than the feed's bookmark read:\n${others.join("\n")}`).toBeLessThanOrEqual(4);
    // The feed's read (at most one per second) is the feed's; with it the whole replica stays near one per second.
    expect(feed.length).toBeLessThanOrEqual(seconds + 1);
  }, 30_000);
});

describe("a replica's connections", () => {
  it("hold one LISTEN, the sequencer's: the feed follows it rather than listening itself", async () => {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity where datname = current_database() and query ilike 'listen %'`.execute(h.ctx.db);
    expect(rows[0]!.n).toBe(1);
  });
});

describe("Revoke", () => {
  it("is one round trip for a token and for an agent, with nothing else sent on its behalf but the sequencer's pass and the kill's trail", async () => {
    const { agent } = await h.grpc.agents.registerAgent({ name: "one-trip", publicKey: publicKey() });
    const agentId = agent!.agentId;
    const { tokenId } = await h.grpc.tokens.issue({ agentId });
    await h.ctx.sequencer.flush("audit");
    for (const target of [{ case: "tokenId" as const, value: tokenId }, { case: "agentId" as const, value: agentId }]) {
      const from = counter.statements.length;
      await h.grpc.tokens.revoke({ target, reason: "one trip" });
      // A kill then looks for the agent's usage the log lacks (none here), to log it at once:
      // taken up to that look, so that a background loop's later tick is not counted.
      const trail = (s: string) => /from usage_counts where agent_id/.test(s);
      for (let i = 0; i < 100 && target.case === "agentId" && !counter.statements.slice(from).some(trail); i++) await new Promise((r) => setTimeout(r, 20));
      const upTo = target.case === "agentId" ? from + counter.statements.slice(from).findIndex(trail) + 1 : counter.statements.length;
      const sent = counter.statements.slice(from, upTo).filter((s) => !isFeedRead(s) && !isConnectionSetup(s) && !/agentid_(sequence|number)_/.test(s));
      expect(sent.filter((s) => /agentid_revoke_/.test(s))).toHaveLength(1);
      expect(sent.filter((s) => /^\s*(begin|commit)/i.test(s))).toEqual([]);
      expect(sent.filter((s) => !/agentid_revoke_/.test(s)).map((s) => s.replace(/\s+/g, " ").trim())).toEqual(
        target.case === "agentId" ? ["select 1 from usage_counts where agent_id = $1 and n > logged limit 1"] : [],
      );
    }
  });
});
