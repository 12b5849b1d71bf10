// Retention: token revocations leave the log once the token has expired; agent revocations stay.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { FeedFollower } from "../src/client/feed.js";
import { compactRevocations } from "../src/store/revocation-reads.js";
import { publicKey, startHarness, type Harness } from "./support/harness.js";

let h: Harness;
let admin: pg.Client;
beforeAll(async () => {
  // Compaction runs when the test says so, with no minimum age.
  h = await startHarness({ config: { feedCompactIntervalMs: 0, feedMinRetentionMs: 0 } });
  admin = new pg.Client({ connectionString: h.databaseUrl });
  await admin.connect();
});
afterAll(async () => {
  await admin?.end();
  await h?.close();
});

async function logRows(): Promise<{ revision: bigint; target: string }[]> {
  const { rows } = await admin.query("select revision, coalesce(token_id, agent_id) as target from revocations order by revision");
  return rows.map((r) => ({ revision: BigInt(r.revision), target: r.target }));
}

async function agent(): Promise<string> {
  return (await h.grpc.agents.registerAgent({ name: "retention", publicKey: publicKey() })).agent!.agentId;
}

async function revokeTokens(agentId: string, n: number, ttlMs: number): Promise<bigint[]> {
  const revisions: bigint[] = [];
  for (let i = 0; i < n; i++) {
    const t = await h.grpc.tokens.issue({ agentId, ttl: durationFromMs(ttlMs) });
    revisions.push((await h.grpc.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "r" })).revision);
  }
  return revisions;
}

/** Waits out a TTL (not a timing assertion: the test needs the tokens to be expired). */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function watchOnce(after: bigint): Promise<{ events: bigint[]; error?: ConnectError }> {
  const abort = new AbortController();
  const events: bigint[] = [];
  try {
    for await (const m of h.grpc.revocations.watchRevocations({ afterRevision: after }, { signal: abort.signal })) {
      events.push(...m.events.map((e) => e.revision));
      if (m.progress) break;
    }
    return { events };
  } catch (err) {
    return { events, error: ConnectError.from(err) };
  } finally {
    abort.abort();
  }
}

describe("retention and compaction", () => {
  it("drops expired token revocations, keeps agent revocations, and sends old cursors OUT_OF_RANGE", async () => {
    const a = await agent();
    const killed = await agent();
    // Long enough that a loaded machine still checks "not expired yet" before they expire.
    const short = await revokeTokens(a, 4, 4000);
    const long = await revokeTokens(a, 2, 600_000);
    const agentRev = (await h.grpc.tokens.revoke({ target: { case: "agentId", value: killed }, reason: "kill" })).revision;
    const moreShort = await revokeTokens(a, 2, 4000);
    const cursor = short[1]!;

    // Not expired yet: nothing to drop.
    expect(await h.ctx.feed.compact()).toBe(0);
    await sleep(4200);
    // A minimum age keeps just-expired events for briefly disconnected watchers.
    expect(await compactRevocations(h.ctx.db, 3_600_000)).toBe(0);
    expect(await h.ctx.feed.compact()).toBe(short.length + moreShort.length);

    const retained = (await logRows()).map((r) => r.revision);
    expect(retained).toEqual([...long, agentRev].sort((x, y) => (x < y ? -1 : 1)));

    // A cursor below the compaction floor may have missed events: OUT_OF_RANGE, with advice.
    const old = await watchOnce(cursor);
    expect(old.error?.code).toBe(Code.OutOfRange);
    expect(old.error?.rawMessage).toMatch(/replay from 0/);
    // From 0: the complete current set.
    expect((await watchOnce(0n)).events).toEqual(retained.filter((r) => r <= retained.at(-1)!));
    // A cursor at or above the floor resumes normally.
    const floor = moreShort.at(-1)!;
    expect((await watchOnce(floor)).error).toBeUndefined();
  });

  it("the SDK's follower replays from 0 after OUT_OF_RANGE and ends with the complete set", async () => {
    const a = await agent();
    const short = await revokeTokens(a, 3, 1000);
    const keep = await revokeTokens(a, 1, 600_000);
    await sleep(1200);
    await h.ctx.feed.compact();
    const truth = await logRows();
    const seen: bigint[] = [];
    let resets = 0;
    const f = new FeedFollower({
      endpoints: [`http://${h.grpcAddress}`],
      apiKey: h.adminKey,
      afterRevision: short[0]!,
      onEvent: (e) => seen.push(e.revision),
      onReset: () => resets++,
    });
    f.start();
    try {
      while (f.revision < keep[0]!) await sleep(10);
    } finally {
      await f.close();
    }
    expect(resets).toBe(1);
    expect(seen).toEqual(truth.map((t) => t.revision));
  });

  it("keeps the log bounded under steady issue/revoke traffic", async () => {
    const a = await agent();
    const sizes: number[] = [];
    for (let round = 0; round < 3; round++) {
      await revokeTokens(a, 15, 1000);
      await sleep(1100);
      await h.ctx.feed.compact();
      sizes.push((await logRows()).length);
    }
    // Only the long-lived and agent events of the earlier tests remain, however many rounds run.
    expect(new Set(sizes).size).toBe(1);
  });
});
