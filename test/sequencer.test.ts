import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { sql } from "kysely";
import pg from "pg";
import pino from "pino";
import type { Db } from "../src/store/database.js";
import { openDatabase } from "../src/store/open.js";
import { Sequencer, type PassResult, type SequencedLog } from "../src/store/sequencer.js";
import { revocationLog } from "../src/store/revocations.js";
import type { LogEvent } from "../src/store/revocation-reads.js";
import { createTestDatabase, publicKey, startHarness, type Harness } from "./support/harness.js";
import { until } from "./support/until.js";
import { Role } from "../gen/agentid/v1/key_pb.js";
import { PolicyKind } from "../gen/agentid/v1/policy_pb.js";
import { ActivityKind } from "../gen/agentid/v1/activity_pb.js";

const logger = pino({ level: "silent" });

/**
 * A log whose passes are scripted: rows "commit" by being pushed to `committed`, and a pass takes
 * its snapshot when it starts, like the database function.
 */
class ScriptedLog implements SequencedLog {
  name = "scripted";
  channel = "scripted_channel";
  committed: bigint[] = [];
  readonly numbers = new Map<bigint, bigint>();
  head = 0n;
  passes = 0;
  /** Holds the next pass open until released. */
  hold: Promise<void> | undefined;
  busyNext = false;
  failNext: Error | undefined;

  async pass(_db: Db, max: number, waiting: bigint[]): Promise<PassResult> {
    this.passes++;
    const snapshot = this.busyNext ? [] : this.committed.splice(0, max);
    const busy = this.busyNext;
    this.busyNext = false;
    const failure = this.failNext;
    this.failNext = undefined;
    await this.hold;
    if (failure) {
      this.committed.unshift(...snapshot);
      throw failure;
    }
    for (const id of snapshot) this.numbers.set(id, ++this.head);
    const found = new Map<bigint, bigint>();
    for (const id of waiting) if (this.numbers.has(id)) found.set(id, this.numbers.get(id)!);
    return { head: this.head, numbered: snapshot.length, busy, found };
  }
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/** Lets every pending promise chain run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

function sequencerFor(log: ScriptedLog, batch = 100): Sequencer {
  return new Sequencer({ db: {} as Db, databaseUrl: "", logger, logs: [log], tickMs: 1000, batch });
}

describe("the sequencer loop", () => {
  afterEach(() => vi.useRealTimers());

  it("resolves a writer with its number; wake-ups during a pass coalesce into one more pass", async () => {
    const log = new ScriptedLog();
    const seq = sequencerFor(log);
    const g = gate();
    log.hold = g.promise;
    log.committed.push(1n);
    const first = seq.numberOf("scripted", 1n);
    await settle();
    // Committed while the first pass runs: not in its snapshot.
    log.committed.push(2n, 3n);
    const later = [seq.numberOf("scripted", 2n), seq.numberOf("scripted", 3n)];
    for (let i = 0; i < 5; i++) seq.wake("scripted");
    log.hold = undefined;
    g.open();
    expect(await first).toBe(1n);
    expect(await Promise.all(later)).toEqual([2n, 3n]);
    await settle();
    expect(log.passes).toBe(2);
  });

  it("waits for another replica's NOTIFY when that replica holds the head, without polling", async () => {
    const log = new ScriptedLog();
    const seq = sequencerFor(log);
    log.committed.push(7n);
    log.busyNext = true;
    let number: bigint | undefined;
    void seq.numberOf("scripted", 7n).then((n) => (number = n));
    await settle();
    expect(log.passes).toBe(1);
    expect(number).toBeUndefined();
    // The other replica numbers the row and announces its head.
    log.committed = [];
    log.numbers.set(7n, 42n);
    seq.heard("scripted", 42n);
    await settle();
    expect(number).toBe(42n);
    expect(log.passes).toBe(2);
    expect(seq.head("scripted")).toBe(42n);
  });

  it("hears other replicas' heads without a statement when nobody here waits", async () => {
    const log = new ScriptedLog();
    const seq = sequencerFor(log);
    const heads: bigint[] = [];
    seq.onHead("scripted", (h) => heads.push(h));
    seq.heard("scripted", 5n);
    seq.heard("scripted", 4n);
    seq.heard("scripted", 9n);
    await settle();
    expect(log.passes).toBe(0);
    expect(heads).toEqual([5n, 9n]);
  });

  it("hands on its own rows before their head is heard, even when its own NOTIFY arrives before the pass's result", async () => {
    // The listening connection can hear the pass's NOTIFY (sent at commit) before the pass's
    // connection has its ReadyForQuery: a follower told of the head first would read the rows.
    const log = new ScriptedLog();
    const seq = sequencerFor(log);
    const order: string[] = [];
    const pass = log.pass.bind(log);
    log.pass = async (db, max, waiting) => {
      const r = await pass(db, max, waiting);
      seq.heard("scripted", r.head);
      const events = Array.from({ length: r.numbered }, (_, i) => ({ revision: r.head - BigInt(r.numbered - 1 - i) }) as LogEvent);
      return { ...r, events };
    };
    seq.onNumbered("scripted", (es) => order.push(`rows ${es.map((e) => e.revision).join(",")}`));
    seq.onHead("scripted", (h) => order.push(`head ${h}`));
    log.committed.push(1n, 2n);
    seq.wake("scripted");
    await settle();
    // Another replica's head heard between passes is not held back.
    seq.heard("scripted", 5n);
    expect(order).toEqual(["rows 1,2", "head 2", "head 5"]);
  });

  it("follows a full batch with another pass at once", async () => {
    const log = new ScriptedLog();
    const seq = sequencerFor(log, 2);
    log.committed.push(1n, 2n, 3n, 4n, 5n);
    seq.wake("scripted");
    await settle();
    expect(log.passes).toBe(3);
    expect(log.head).toBe(5n);
  });

  it("resolves a flush only after a pass that began after it", async () => {
    const log = new ScriptedLog();
    const seq = sequencerFor(log);
    const g = gate();
    log.hold = g.promise;
    seq.wake("scripted");
    await settle();
    log.committed.push(9n);
    let flushedWith9: boolean | undefined;
    const flushed = seq.flush("scripted").then(() => (flushedWith9 = log.numbers.has(9n)));
    log.hold = undefined;
    g.open();
    await flushed;
    expect(flushedWith9).toBe(true);
    expect(log.passes).toBe(2);
  });

  it("rejects the writers of a failed pass, and numbers their rows in a later one", async () => {
    const log = new ScriptedLog();
    const seq = sequencerFor(log);
    log.committed.push(1n);
    log.failNext = new Error("connection lost");
    await expect(seq.numberOf("scripted", 1n)).rejects.toThrow("connection lost");
    await expect(seq.flush("scripted")).resolves.toBe(1n);
    expect(log.numbers.get(1n)).toBe(1n);
  });

  it("runs one pass per safety tick on an idle replica, and nothing else", async () => {
    vi.useFakeTimers();
    const log = new ScriptedLog();
    const seq = sequencerFor(log);
    await seq.start();
    expect(log.passes).toBe(1);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(log.passes).toBe(11);
    expect(seq.statements).toBe(11);
    await seq.close();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(log.passes).toBe(11);
  });
});

describe("two replicas' sequencers on one database", () => {
  let db: Db;
  let url: string;
  const sequencers: Sequencer[] = [];
  beforeAll(async () => {
    url = await createTestDatabase();
    db = (await openDatabase(url, 12)).db;
    for (let i = 0; i < 2; i++) {
      const s = new Sequencer({ db, databaseUrl: url, logger, logs: [revocationLog], tickMs: 60_000 });
      await s.start();
      sequencers.push(s);
    }
  });
  afterAll(async () => {
    for (const s of sequencers) await s.close();
    await db?.destroy();
  });

  async function append(): Promise<bigint> {
    const { rows } = await sql<{ id: string }>`
      insert into revocation_inbox (token_id, agent_id, reason, revoked_by) values (null, 'agt_x', 'r', 'test') returning id`.execute(db);
    return BigInt(rows[0]!.id);
  }

  it("number rows appended concurrently through both gap-free, and every writer hears its number", async () => {
    const n = 200;
    const revisions = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const id = await append();
        return sequencers[i % 2]!.numberOf("revocations", id);
      }),
    );
    const sorted = [...revisions].sort((a, b) => (a < b ? -1 : 1));
    expect(sorted).toEqual(Array.from({ length: n }, (_, i) => BigInt(i + 1)));
  });

  it("never number below what is visible: a row whose transaction commits late gets a number above rows committed meanwhile", async () => {
    // The lower inbox id, held open while a later append commits and is numbered.
    const held = new pg.Client({ connectionString: url });
    await held.connect();
    try {
      await held.query("begin");
      const { rows } = await held.query<{ id: string }>(
        "insert into revocation_inbox (token_id, agent_id, reason, revoked_by) values (null, 'agt_held', 'r', 'test') returning id",
      );
      const heldId = BigInt(rows[0]!.id);
      const laterId = await append();
      expect(laterId).toBeGreaterThan(heldId);
      const later = await sequencers[0]!.numberOf("revocations", laterId);
      // A reader has seen `later` now; the held row must come after it, not fill a hole below it
      // (with numbers taken at insert, a bigserial, it would be later - 1).
      const seen = (await sql<{ revision: string }>`select max(revision) as revision from revocations`.execute(db)).rows[0]!.revision;
      expect(BigInt(seen)).toBe(later);
      await held.query("commit");
      sequencers[1]!.wake("revocations");
      const heldRevision = await sequencers[1]!.numberOf("revocations", heldId);
      expect(heldRevision).toBe(later + 1n);
    } finally {
      await held.end();
    }
  });

  it("number in commit order: a row committed before another was appended gets the lower revision", async () => {
    let last = 0n;
    for (let i = 0; i < 20; i++) {
      const id = await append();
      const r = await sequencers[i % 2]!.numberOf("revocations", id);
      expect(r).toBeGreaterThan(last);
      last = r;
    }
  });
});

describe("writers", () => {
  // No safety tick and no checkpoint (whose sync runs a pass) within the test: an entry is
  // numbered only because its writer said it committed.
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ sequencerTickMs: 3_600_000, config: { auditCheckpointIntervalMs: 3_600_000 } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("wake the transparency log themselves: every audited change is numbered at once, not at the next tick", async () => {
    const c = h.grpc;
    let agentId = "";
    let keyId = "";
    const writes: [string, () => Promise<unknown>][] = [
      ["RegisterAgent", async () => (agentId = (await c.agents.registerAgent({ name: "woken", publicKey: publicKey() })).agent!.agentId)],
      ["Issue", () => c.tokens.issue({ agentId })],
      ["CreateApiKey", async () => (keyId = (await c.keys.createApiKey({ name: "woken", role: Role.ISSUER })).key!.keyId)],
      ["RevokeApiKey", () => c.keys.revokeApiKey({ keyId })],
      ["CreatePolicy", () => c.policies.createPolicy({ policy: { name: "woken", kind: PolicyKind.TRUST_BELOW, threshold: 1 } })],
      ["DeletePolicy", () => c.policies.deletePolicy({ name: "woken" })],
      ["ReportActivity", () => c.activity.reportActivity({ agentId, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "woken" })],
      ["Revoke", () => c.tokens.revoke({ target: { case: "agentId", value: agentId }, reason: "woken" })],
    ];
    for (const [name, write] of writes) {
      const before = h.ctx.sequencer.head("audit");
      await write();
      const head = await until(async () => h.ctx.sequencer.head("audit"), (n) => n > before, 5000);
      expect(head, `${name}'s entry numbered`).toBeGreaterThan(before);
    }
  });
});
