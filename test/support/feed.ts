// Stream recorders, and followers that record every event they receive with the ground truth to compare them with.
import pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { FeedFollower } from "../../src/client/feed.js";
import { publicKey, type Clients } from "./harness.js";
import { CLUSTER_ADMIN_KEY } from "../../bench/lib/cluster.js";
import type { WatchRevocationsResponse } from "../../gen/agentid/v1/revocation_pb.js";

/** Collects a WatchRevocations stream in the background; wait for conditions on what arrived. */
export class StreamRecorder {
  readonly messages: WatchRevocationsResponse[] = [];
  readonly controller = new AbortController();
  error: unknown;
  ended = false;
  private waiters: (() => void)[] = [];
  readonly done: Promise<void>;

  constructor(clients: Clients, afterRevision = 0n) {
    this.done = (async () => {
      try {
        for await (const m of clients.revocations.watchRevocations({ afterRevision }, { signal: this.controller.signal })) {
          this.messages.push(m);
          this.notify();
        }
      } catch (err) {
        if (!this.controller.signal.aborted) this.error = err;
      } finally {
        this.ended = true;
        this.notify();
      }
    })();
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  get revisions(): bigint[] {
    return this.events.map((e) => e.revision);
  }

  get events() {
    return this.messages.flatMap((m) => m.events);
  }

  get progress(): bigint[] {
    return this.messages.flatMap((m) => (m.progress ? [m.progress.revision] : []));
  }

  /** Resolves once predicate holds; rejects after timeoutMs (a hang guard, not a timing claim). */
  async until(predicate: (r: this) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this)) {
      if (this.ended) throw new Error(`stream ended: ${String(this.error)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`condition not met; got revisions ${this.revisions.join(",")}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, Math.min(left, 100));
      });
    }
  }

  stop(): Promise<void> {
    this.controller.abort();
    return this.done;
  }
}

export interface Seen {
  revision: bigint;
  target: string;
}

export interface Collector {
  name: string;
  seen: Seen[];
  follower: FeedFollower;
  errors: string[];
}

export function collect(name: string, endpoints: string[], startIndex = 0, apiKey = CLUSTER_ADMIN_KEY): Collector {
  const seen: Seen[] = [];
  const errors: string[] = [];
  const follower = new FeedFollower({
    endpoints,
    startIndex,
    apiKey,
    backoff: { initialMs: 20, maxMs: 300 },
    onEvent: (e) => seen.push({ revision: e.revision, target: e.target.value ?? "" }),
    onError: (err, endpoint) => errors.push(`${endpoint}: ${err.message}`),
  });
  follower.start();
  return { name, seen, follower, errors };
}

/** Waits (liveness only, not a timing assertion) until every collector has reached `head`. */
export async function caughtUp(collectors: Collector[], head: bigint, limitMs = 30_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (collectors.some((c) => c.follower.revision < head)) {
    if (Date.now() > deadline) {
      const behind = collectors.filter((c) => c.follower.revision < head).map((c) => `${c.name} at ${c.follower.revision} (${c.errors.slice(-3).join("; ")})`);
      throw new Error(`followers never reached revision ${head}: ${behind.join(", ")}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The log as PostgreSQL has it: revision order, token id or agent id. */
export async function logTruth(databaseUrl: string): Promise<Seen[]> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ revision: string; token_id: string | null; agent_id: string }>(
      "select revision, token_id, agent_id from revocations order by revision",
    );
    return rows.map((r) => ({ revision: BigInt(r.revision), target: r.token_id ?? r.agent_id }));
  } finally {
    await c.end();
  }
}

/** Agents with tokens; returns what to revoke: every token id, and some of the agents. */
export async function workload(c: Clients, agents: number, tokensPerAgent: number): Promise<{ tokenIds: string[]; agentIds: string[] }> {
  const tokenIds: string[] = [];
  const agentIds: string[] = [];
  for (let a = 0; a < agents; a++) {
    const { agent } = await c.agents.registerAgent({ name: `load-${a}`, publicKey: publicKey() });
    agentIds.push(agent!.agentId);
    const issued = await Promise.all(
      Array.from({ length: tokensPerAgent }, () => c.tokens.issue({ agentId: agent!.agentId, ttl: durationFromMs(3_600_000) })),
    );
    tokenIds.push(...issued.map((t) => t.tokenId));
  }
  return { tokenIds, agentIds };
}

export type RevokeItem = { case: "tokenId"; value: string } | { case: "agentId"; value: string };

/**
 * Revokes every item with `concurrency` workers, spreading calls over `targets` (replicas). A failed
 * call is retried on the next replica: Revoke is idempotent, so a retry after an unknown outcome
 * (the connection died around the commit) is safe. Returns the codes of the failures seen.
 */
export async function revokeAll(
  targets: (() => Clients)[],
  items: RevokeItem[],
  concurrency: number,
  onProgress?: (done: number) => void,
  /** Awaited before item i is revoked: lets a test hold part of the load until a fault has struck. */
  gate?: (i: number) => Promise<void> | undefined,
): Promise<Code[]> {
  const failures: Code[] = [];
  let nextItem = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (;;) {
        const i = nextItem++;
        if (i >= items.length) return;
        await gate?.(i);
        for (let attempt = 0; ; attempt++) {
          const target = targets[(worker + i + attempt) % targets.length]!();
          try {
            await target.tokens.revoke({ target: items[i]!, reason: "fault test" }, { timeoutMs: 10_000 });
            break;
          } catch (err) {
            failures.push(ConnectError.from(err).code);
            if (attempt > 500) throw err;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        onProgress?.(++done);
      }
    }),
  );
  return failures;
}

export function shuffle<T>(xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Revokes the given tokens at a steady rate, in the background, until stopped or out of tokens. */
export function steadyRevoker(c: Clients, tokenIds: string[], perSecond: number) {
  let stopped = false;
  let asked = 0;
  let done = 0;
  let lastRevision = 0n;
  const failures: string[] = [];
  const running = (async () => {
    const started = Date.now();
    const inFlight: Promise<void>[] = [];
    while (!stopped && asked < tokenIds.length) {
      const id = tokenIds[asked++]!;
      inFlight.push(
        c.tokens.revoke({ target: { case: "tokenId", value: id }, reason: "storm" }, { timeoutMs: 60_000 }).then(
          (r) => {
            done++;
            if (r.revision > lastRevision) lastRevision = r.revision;
          },
          (err: unknown) => void failures.push(ConnectError.from(err).message),
        ),
      );
      // Paced by the clock, not by the calls: a slow Revoke must not slow the asking.
      const next = started + (asked * 1000) / perSecond;
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
    }
    await Promise.all(inFlight);
  })();
  return {
    get asked() {
      return asked;
    },
    async stop() {
      stopped = true;
      await running;
      return { asked, done, failures, lastRevision };
    },
  };
}
