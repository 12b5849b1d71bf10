// The feed's guarantees under faults: every follower receives every revocation exactly once, in
// revision order, whatever breaks. The log table in PostgreSQL is the truth they are checked against.
import { afterEach, describe, expect, it } from "vitest";
import pg from "pg";
import { Code } from "@connectrpc/connect";
import { createTestDatabase, startHarness, type Clients, type Harness } from "./support/harness.js";
import { replicaClients, startOwnPostgres, startReplica, type OwnPostgres, type Replica } from "../bench/lib/cluster.js";
import { caughtUp, collect, logTruth, revokeAll, shuffle, workload, type Collector, type RevokeItem } from "./support/feed.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
});

function track<T extends { close(): Promise<unknown> } | Collector>(x: T): T {
  cleanup.push(() => ("follower" in x ? x.follower.close() : x.close()));
  return x;
}

function items(w: { tokenIds: string[]; agentIds: string[] }, agentsToKill: number): RevokeItem[] {
  return shuffle([
    ...w.tokenIds.map((value) => ({ case: "tokenId" as const, value })),
    ...w.agentIds.slice(0, agentsToKill).map((value) => ({ case: "agentId" as const, value })),
  ]);
}

/** Every collector saw exactly the log, in order, once. */
async function expectExactlyOnceInOrder(databaseUrl: string, collectors: Collector[]): Promise<void> {
  const truth = await logTruth(databaseUrl);
  const head = truth.at(-1)?.revision ?? 0n;
  // Gap-free log: revisions 1..head, each once.
  expect(truth.map((t) => t.revision)).toEqual(Array.from({ length: Number(head) }, (_, i) => BigInt(i + 1)));
  await caughtUp(collectors, head);
  for (const c of collectors) expect({ name: c.name, seen: c.seen }).toEqual({ name: c.name, seen: truth });
}

// Hang guards for three replica processes on a shared, loaded 2-core machine, not timing claims.
describe("revocation feed under faults", { timeout: 120_000 }, () => {
  it("loses nothing when the LISTEN connections are killed while revocations commit", async () => {
    const databaseUrl = await createTestDatabase();
    const a = track(await startHarness({ databaseUrl }));
    const b = track(await startHarness({ databaseUrl }));
    const w = await workload(a.grpc, 6, 40);
    const collectors = [a, b].flatMap((h, r) => [0, 1, 2].map((i) => track(collect(`replica${r}-watcher${i}`, [`http://${h.grpcAddress}`], 0, h.adminKey))));

    const admin = new pg.Client({ connectionString: databaseUrl });
    await admin.connect();
    cleanup.push(() => admin.end());
    const killListeners = () =>
      admin.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and query ilike 'listen %' and pid <> pg_backend_pid()`,
      );
    let killed = 0;
    const failures = await revokeAll([() => a.grpc, () => b.grpc], items(w, 3), 8, (done) => {
      // Kill both replicas' LISTEN connections several times while revokes keep committing.
      if (done % 40 === 0) void killListeners().then((r) => (killed += r.rowCount ?? 0));
    });
    expect(failures).toEqual([]);
    expect(killed).toBeGreaterThan(0);
    await expectExactlyOnceInOrder(databaseUrl, collectors);

    // Both replicas are listening again (so the next revocation is pushed, not polled).
    for (;;) {
      const { rows } = await admin.query(
        "select count(*)::int as n from pg_stat_activity where datname = current_database() and query ilike 'listen %'",
      );
      if (rows[0].n >= 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it("loses nothing when PostgreSQL restarts under load", async () => {
    const own: OwnPostgres = await startOwnPostgres();
    cleanup.push(() => own.destroy());
    const a = track(await startHarness({ databaseUrl: own.url }));
    const b = track(await startHarness({ databaseUrl: own.url }));
    const w = await workload(a.grpc, 5, 40);
    const collectors = [a, b].flatMap((h, r) => [0, 1].map((i) => track(collect(`replica${r}-watcher${i}`, [`http://${h.grpcAddress}`], 0, h.adminKey))));

    let stopped: Promise<void> | undefined;
    let restarted: Promise<void> | undefined;
    const failures = await revokeAll(
      [() => a.grpc, () => b.grpc],
      items(w, 2),
      6,
      (done) => {
        if (done === 60) {
          stopped = own.stop();
          restarted = stopped.then(() => new Promise((r) => setTimeout(r, 300))).then(() => own.start());
        }
      },
      // Part of the load is sent while PostgreSQL is down, the rest after it is back.
      (i) => (i >= 150 ? restarted : i >= 100 ? stopped : undefined),
    );
    await restarted;
    expect(failures.length).toBeGreaterThan(0);
    // Outages answer UNAVAILABLE (retryable), never INTERNAL.
    expect(new Set(failures.filter((c) => c !== Code.Unavailable))).toEqual(new Set());
    await expectExactlyOnceInOrder(own.url, collectors);
    // The servers serve again after the restart.
    expect((await a.grpc.tokens.introspect({ token: "at_nope" })).active).toBe(false);
    const { agent } = await b.grpc.agents.getAgent({ agentId: w.agentIds.at(-1)! });
    expect(agent?.agentId).toBe(w.agentIds.at(-1));
  });

  it("resumes on another replica, from the last revision, when a replica is SIGKILLed mid-stream", async () => {
    const databaseUrl = await createTestDatabase();
    const replicas: Replica[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await startReplica(databaseUrl);
      replicas.push(r);
      cleanup.push(() => r.kill("SIGKILL"));
    }
    const [victim, b, c] = replicas as [Replica, Replica, Replica];
    const clients = replicas.map((r) => replicaClients(r.grpcUrl));
    const w = await workload(clients[1]!, 5, 40);
    // Every follower starts on the victim; when it dies they move on to b or c.
    const collectors = [0, 1, 2, 3].map((i) =>
      track(collect(`watcher${i}`, i % 2 ? [victim.grpcUrl, b.grpcUrl] : [victim.grpcUrl, c.grpcUrl])),
    );
    let dead = false;
    let killed: Promise<void> | undefined;
    const targets = [0, 1, 2].map((i) => () => clients[dead && i === 0 ? 1 : i]!);
    const failures = await revokeAll(
      targets,
      items(w, 2),
      6,
      (done) => {
        if (done === 70) killed = victim.kill("SIGKILL").then(() => void (dead = true));
      },
      // The rest of the load commits after the victim is gone.
      (i) => (i >= 120 ? killed : undefined),
    );
    await killed;
    // Calls in flight on the dead replica fail (UNAVAILABLE, or ABORTED for a connection cut
    // mid-call); revokeAll retried them elsewhere, so every revoke still happened.
    expect(failures.length).toBeGreaterThanOrEqual(0);
    await expectExactlyOnceInOrder(databaseUrl, collectors);
    for (const col of collectors) expect(col.follower.reconnects).toBeGreaterThan(0);
  });

  it("orders concurrent revokes from many connections through several replicas identically for every watcher", async () => {
    const databaseUrl = await createTestDatabase();
    const replicas: Replica[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await startReplica(databaseUrl);
      replicas.push(r);
      cleanup.push(() => r.kill("SIGKILL"));
    }
    const setup = replicaClients(replicas[0]!.grpcUrl);
    const w = await workload(setup, 8, 40);
    const collectors = replicas.flatMap((r, i) => [0, 1].map((j) => track(collect(`replica${i}-watcher${j}`, [r.grpcUrl]))));
    // One connection per writer: 24 writers, each pinned to one replica by its own transport.
    const writers: Clients[] = Array.from({ length: 24 }, (_, i) =>
      replicaClients(replicas[i % 3]!.grpcUrl),
    );
    let k = 0;
    const failures = await revokeAll(writers.map((x) => () => x), items(w, 4), 24, () => k++);
    expect(failures).toEqual([]);
    await expectExactlyOnceInOrder(databaseUrl, collectors);
  });
});

export type { Harness };
