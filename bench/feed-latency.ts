// Revocation-to-watcher latency with 2 replicas (separate processes, one PostgreSQL), beside a raw
// PostgreSQL LISTEN/NOTIFY round trip measured in the same run as the baseline.
// Run: npx tsx bench/feed-latency.ts [samples]
import { generateKeyPairSync } from "node:crypto";
import pg from "pg";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../gen/agentid/v1/token_pb.js";
import { RevocationService } from "../gen/agentid/v1/revocation_pb.js";
import { CLUSTER_ADMIN_KEY, startOwnPostgres, startReplica, type Replica } from "./lib/cluster.js";
import { bearer } from "./lib/clients.js";

const samples = Number(process.argv[2] ?? 300);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const fmt = (ms: number) => `${ms.toFixed(2)} ms`;
const now = () => performance.now();

function rawPublicKey(): Uint8Array {
  const { publicKey } = generateKeyPairSync("ed25519");
  return new Uint8Array(publicKey.export({ type: "spki", format: "der" }).subarray(-32));
}

async function notifyBaseline(url: string): Promise<number[]> {
  const listener = new pg.Client({ connectionString: url });
  const notifier = new pg.Client({ connectionString: url });
  await listener.connect();
  await notifier.connect();
  await listener.query("listen bench_rtt");
  const out: number[] = [];
  let resolve: () => void = () => {};
  listener.on("notification", () => resolve());
  for (let i = 0; i < samples + 20; i++) {
    const got = new Promise<void>((r) => (resolve = r));
    const t0 = now();
    await notifier.query("select pg_notify('bench_rtt', $1)", [String(i)]);
    await got;
    if (i >= 20) out.push(now() - t0);
  }
  await listener.end();
  await notifier.end();
  return out;
}

async function feedLatency(a: Replica, b: Replica) {
  const ta = createGrpcTransport({ baseUrl: a.grpcUrl, interceptors: [bearer(CLUSTER_ADMIN_KEY)] });
  const agents = createClient(AgentService, ta);
  const tokens = createClient(TokenService, ta);
  const { agent } = await agents.registerAgent({ name: "bench", publicKey: rawPublicKey() });
  const ids: string[] = [];
  for (let i = 0; i < samples + 20; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: 50 }, () => tokens.issue({ agentId: agent!.agentId, ttl: durationFromMs(3_600_000) })),
    );
    ids.push(...batch.map((t) => t.tokenId));
  }
  // A watcher on each replica; the revoke goes through replica A.
  const arrivals = new Map<string, { a?: number; b?: number }>();
  const waiters = new Map<string, () => void>();
  const abort = new AbortController();
  const follow = (r: Replica, key: "a" | "b") =>
    (async () => {
      const feed = createClient(RevocationService, createGrpcTransport({ baseUrl: r.grpcUrl, interceptors: [bearer(CLUSTER_ADMIN_KEY)] }));
      try {
        for await (const m of feed.watchRevocations({ afterRevision: 0n }, { signal: abort.signal })) {
          const t = now();
          for (const e of m.events) {
            if (e.target.case !== "tokenId") continue;
            const id = e.target.value;
            const entry = arrivals.get(id) ?? {};
            entry[key] = t;
            arrivals.set(id, entry);
            if (entry.a !== undefined && entry.b !== undefined) waiters.get(id)?.();
          }
        }
      } catch {
        // aborted at the end
      }
    })();
  const followers = [follow(a, "a"), follow(b, "b")];
  await new Promise((r) => setTimeout(r, 500));
  const toOther: number[] = [];
  const toSame: number[] = [];
  const rpc: number[] = [];
  const afterResponse: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    const both = new Promise<void>((r) => waiters.set(id, r));
    const t0 = now();
    await tokens.revoke({ target: { case: "tokenId", value: id }, reason: "bench" });
    const t1 = now();
    await both;
    const e = arrivals.get(id)!;
    if (i < 20) continue; // warm-up
    rpc.push(t1 - t0);
    toSame.push(e.a! - t0);
    toOther.push(e.b! - t0);
    afterResponse.push(e.b! - t1);
  }
  abort.abort();
  await Promise.all(followers);
  return { rpc, toSame, toOther, afterResponse };
}

const pgServer = await startOwnPostgres();
const replicas: Replica[] = [];
try {
  replicas.push(await startReplica(pgServer.url));
  replicas.push(await startReplica(pgServer.url));
  const baseline = await notifyBaseline(pgServer.url);
  const { rpc, toSame, toOther, afterResponse } = await feedLatency(replicas[0]!, replicas[1]!);
  const b50 = pct(baseline, 50);
  const b99 = pct(baseline, 99);
  console.log(`${samples} sequential revocations, 2 replicas (separate processes), one PostgreSQL, same host`);
  console.log(`baseline  raw LISTEN/NOTIFY round trip           p50 ${fmt(b50)}  p99 ${fmt(b99)}`);
  const row = (name: string, xs: number[]) =>
    console.log(
      `${name.padEnd(45)} p50 ${fmt(pct(xs, 50))}  p99 ${fmt(pct(xs, 99))}  (${(pct(xs, 50) / b50).toFixed(1)}x / ${(pct(xs, 99) / b99).toFixed(1)}x baseline)`,
    );
  row("Revoke RPC round trip (via replica A)", rpc);
  row("revoke sent -> event at watcher on replica A", toSame);
  row("revoke sent -> event at watcher on replica B", toOther);
  // The RPC's own time is mostly the durable commit (WAL flush); this is what the feed adds to it.
  // Negative when the event overtakes the RPC's response.
  row("Revoke response -> event on replica B", afterResponse);
} finally {
  for (const r of replicas) await r.kill("SIGTERM");
  await pgServer.destroy();
}
