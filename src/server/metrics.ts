// Prometheus metrics (prom-client), served at GET /metrics on the HTTP port.
//
// Who may read them: an admin API key, or the dedicated AGENTID_METRICS_KEY (which opens nothing
// else), as `Authorization: Bearer <key>`. Labels are bounded: transport, service, method, code,
// surface, result, reason, kind; never a token, agent or key id.
import { timingSafeEqual } from "node:crypto";
import type http from "node:http";
import type http2 from "node:http2";
import { monitorEventLoopDelay, performance, type IntervalHistogram } from "node:perf_hooks";
import { sql } from "kysely";
import type pg from "pg";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { WatchRevocationsResponse, RevocationEvent } from "../../gen/agentid/v1/revocation_pb.js";
import type { Db } from "../store/database.js";
import type { RevocationFeed } from "../feed/feed.js";
import type { AuditLog } from "../audit/log.js";
import type { Authenticator } from "./auth.js";
import type { Verifier } from "../client/verifier.js";
import { hashSecret } from "../domain/ids.js";
import { codeOfError } from "./errors.js";
import { isPreEncoded, type PreEncoded } from "./encoded.js";
import { tap } from "../lib/iterables.js";
import type { Handler, ServiceRoutes } from "./services.js";
import { peerOf } from "./limits.js";

/** Where an introspection was answered. */
export type Surface = "rpc" | "oauth" | "auth_request" | "ext_authz";

/** gRPC's canonical code names, the `code` label's values. */
const CODE_NAMES = Object.fromEntries(
  Object.entries(Code)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [v, k.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase().replace("CANCELED", "CANCELLED")]),
) as Record<number, string>;
CODE_NAMES[0] = "OK";

/** The feed's figures, from its own stats(). */
export function feedFigures(feed: RevocationFeed): {
  watchers: number;
  waitingSubscribers?: number;
  catchUpReads?: number;
  refusals?: number;
  queueDepthMax?: number;
  lastFanoutMs?: number;
} {
  return feed.stats();
}

/** The revocation events a feed response carries (a frame pre-encoded for many streams, or a message). */
export function revocationsIn(res: WatchRevocationsResponse | PreEncoded): readonly RevocationEvent[] {
  return (isPreEncoded(res) ? (res.message as WatchRevocationsResponse) : res).events;
}

export interface MetricsSources {
  db: Db;
  pool: pg.Pool;
  feed: RevocationFeed;
  audit: AuditLog;
}

const LATENCY_BUCKETS = [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Metrics {
  readonly registry = new Registry();
  private readonly loop: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private readonly rpcs: Counter<"transport" | "service" | "method" | "code">;
  private readonly rpcSeconds: Histogram<"transport" | "service" | "method" | "code">;
  private readonly introspections: Counter<"surface" | "result" | "reason">;
  private readonly issued: Counter<"kind">;
  private readonly eventDelay: Histogram;

  constructor(src: MetricsSources) {
    const registers = [this.registry];
    this.rpcs = new Counter({
      name: "agentid_rpc_requests_total",
      help: "RPCs handled, by transport (grpc: the gRPC port; connect: Connect, gRPC-Web and gRPC on the HTTP port), method and status code",
      labelNames: ["transport", "service", "method", "code"],
      registers,
    });
    this.rpcSeconds = new Histogram({
      name: "agentid_rpc_duration_seconds",
      help: "Unary RPC handling time, from decoded request to response",
      labelNames: ["transport", "service", "method", "code"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.introspections = new Counter({
      name: "agentid_introspections_total",
      help: "Token checks by surface (rpc, oauth, auth_request, ext_authz), result (active, inactive) and inactive reason",
      labelNames: ["surface", "result", "reason"],
      registers,
    });
    this.issued = new Counter({
      name: "agentid_tokens_issued_total",
      help: "Tokens issued on this replica, by kind (issuer: with an API key; self: signed by the agent; oauth: at /oauth2/token)",
      labelNames: ["kind"],
      registers,
    });
    // Counted from the transparency log, which keeps every revocation for good (the revocation
    // log is compacted): exact, cluster-wide, and each scrape reads only entries numbered since
    // the last one.
    let countedThrough = -1n;
    new Counter({
      name: "agentid_revocations_total",
      help: "Revocations in force, cluster-wide (read from the transparency log; aggregate replicas with max, not sum), by kind (token, agent) and actor (key, policy, agent)",
      labelNames: ["kind", "actor"],
      registers,
      async collect() {
        try {
          const { rows } = await sql<{ kind: string; actor: string; n: string; last: string }>`
            select kind, split_part(actor, ':', 1) as actor, count(*) as n, max(seq) as last
            from audit_entries
            where kind in ('token.revoked', 'agent.revoked') and seq > ${countedThrough.toString()}::bigint
            group by 1, 2`.execute(src.db);
          let last = countedThrough;
          for (const r of rows) {
            const actor = ["key", "policy", "agent"].includes(r.actor) ? r.actor : "other";
            this.inc({ kind: r.kind === "agent.revoked" ? "agent" : "token", actor }, Number(r.n));
            if (BigInt(r.last) > last) last = BigInt(r.last);
          }
          countedThrough = last;
        } catch {
          // The database is away: agentid_database_up says so; the count catches up next time.
        }
      },
    });
    this.eventDelay = new Histogram({
      name: "agentid_feed_event_delay_seconds",
      help: "From a revocation's commit (revoked_at) until it is written to a WatchRevocations stream, per stream, for the oldest event of each message (a catch-up message counts how old its replayed events are)",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });

    const logRead = new Histogram({
      name: "agentid_feed_log_read_seconds",
      help: "How long one page read of the revocation log took, by reader (tailer: new events; catch_up: for subscribers behind)",
      labelNames: ["reader"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    src.feed.onLogRead((reader, seconds) => logRead.observe({ reader }, seconds));

    const feed = (name: string, help: string, pick: (f: ReturnType<typeof feedFigures>) => number | undefined) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const v = pick(feedFigures(src.feed));
          if (v !== undefined) this.set(v);
        },
      });
    feed("agentid_feed_watchers", "Open WatchRevocations streams on this replica", (f) => f.watchers);
    feed("agentid_feed_waiting_subscribers", "Subscribers waiting for the catch-up budget", (f) => f.waitingSubscribers);
    feed("agentid_feed_catch_up_reads", "Catch-up reads of the log in flight", (f) => f.catchUpReads);
    feed("agentid_feed_refusals", "Subscriptions refused for lack of catch-up budget", (f) => f.refusals);
    feed("agentid_feed_queue_depth_max", "The deepest watcher queue on this replica, in messages", (f) => f.queueDepthMax);
    feed("agentid_feed_fanout_seconds", "How long the last fan-out of events to every watcher took", (f) =>
      f.lastFanoutMs === undefined ? undefined : f.lastFanoutMs / 1000,
    );

    const pool = src.pool;
    new Gauge({
      name: "agentid_db_pool_connections",
      help: "Database pool connections by state (in_use, idle) and callers waiting for one (waiting)",
      labelNames: ["state"],
      registers,
      collect() {
        this.set({ state: "in_use" }, pool.totalCount - pool.idleCount);
        this.set({ state: "idle" }, pool.idleCount);
        this.set({ state: "waiting" }, pool.waitingCount);
      },
    });
    new Gauge({
      name: "agentid_audit_log_size",
      help: "Entries in this replica's transparency log tree",
      registers,
      collect() {
        this.set(Number(src.audit.size));
      },
    });
    // One query per scrape for what only the database knows; a scrape while it is away still
    // answers, without these.
    const pending = new Gauge({
      name: "agentid_sequencer_pending",
      help: "Committed rows still waiting for their number from the sequencer (sequencer lag), by log",
      labelNames: ["log"],
      registers,
    });
    const checkpointAge = new Gauge({
      name: "agentid_audit_checkpoint_age_seconds",
      help: "Time since the newest signed checkpoint",
      registers,
    });
    new Gauge({
      name: "agentid_database_up",
      help: "1 when the scrape could read the database",
      registers,
      async collect() {
        try {
          const { rows } = await sql<{ r: string; a: string; age: number | null }>`
            select (select count(*) from revocations where revision is null) as r,
                   (select count(*) from audit_entries where seq is null) as a,
                   extract(epoch from now() - (select max(signed_at) from audit_checkpoints))::float8 as age`.execute(src.db);
          const row = rows[0]!;
          pending.set({ log: "revocations" }, Number(row.r));
          pending.set({ log: "audit" }, Number(row.a));
          if (row.age !== null) checkpointAge.set(row.age);
          this.set(1);
        } catch {
          this.set(0);
        }
      },
    });

    this.loop.enable();
    const loop = this.loop;
    new Gauge({
      name: "agentid_event_loop_delay_seconds",
      help: "Event-loop delay since the previous scrape, by quantile (1 = the maximum)",
      labelNames: ["quantile"],
      registers,
      collect() {
        if (loop.count > 0) {
          this.set({ quantile: "0.5" }, loop.percentile(50) / 1e9);
          this.set({ quantile: "0.99" }, loop.percentile(99) / 1e9);
          this.set({ quantile: "1" }, loop.max / 1e9);
        }
        loop.reset();
      },
    });
  }

  /** The in-process verifier behind ext_authz: its cache and its view of the feed. */
  followVerifiers(verifiers: () => Iterable<Verifier>): void {
    const sum = (pick: (m: ReturnType<Verifier["metrics"]>) => number) => {
      let n = 0;
      for (const v of verifiers()) n += pick(v.metrics());
      return n;
    };
    const registers = [this.registry];
    new Gauge({
      name: "agentid_ext_authz_cache_lookups",
      help: "ext_authz Check answers by source since start: hit (from memory), miss (read from the database)",
      labelNames: ["result"],
      registers,
      collect() {
        this.set({ result: "hit" }, sum((m) => m.cacheHits));
        this.set({ result: "miss" }, sum((m) => m.cacheMisses));
      },
    });
    new Gauge({
      name: "agentid_ext_authz_cache_entries",
      help: "Active token answers cached for ext_authz, over every calling key",
      registers,
      collect() {
        this.set(sum((m) => m.cacheSize));
      },
    });
    new Gauge({
      name: "agentid_ext_authz_feed_stale",
      help: "ext_authz feeds (one per calling key) silent past their budget (Check then reads live state)",
      registers,
      collect() {
        this.set(sum((m) => (m.stale ? 1 : 0)));
      },
    });
  }

  /** The same routes, counted and timed per call; `transport` labels which port served them. */
  instrument(services: ServiceRoutes[], transport: "grpc" | "connect"): ServiceRoutes[] {
    return services.map(({ service, handlers, ...rest }) => {
      const metered: Record<string, Handler> = {};
      for (const m of service.methods) {
        const h = handlers[m.localName];
        if (h) metered[m.localName] = this.meter(transport, m, h);
      }
      // The rest (admission before the body) is kept as it was.
      return { ...rest, service, handlers: metered };
    });
  }

  private meter(transport: string, m: DescMethod, h: Handler): Handler {
    const labels = { transport, service: m.parent.typeName, method: m.name };
    // Children per code, made on first use: the hot path does no label hashing.
    const children: { count: Counter.Internal; seconds: Histogram.Internal<string> }[] = [];
    const child = (code: Code) =>
      (children[code] ??= {
        count: this.rpcs.labels({ ...labels, code: CODE_NAMES[code] ?? String(code) }),
        seconds: this.rpcSeconds.labels({ ...labels, code: CODE_NAMES[code] ?? String(code) }),
      });
    if (m.methodKind === "server_streaming") {
      const feedDelay = m.parent.typeName === "agentid.v1.RevocationService" && m.name === "WatchRevocations" ? this.eventDelay : undefined;
      // Once per message, once it is written (tap: the transports ask for the next message only
      // then), for its oldest event: a backlog joined into one message is as late as its first
      // event, and the metric must show what watchers see (issue 28: recorded at the hand-over,
      // for the newest event, it said 100 ms while they saw seconds). Observing every event (per
      // stream) cost more than writing the message.
      const observe = (res: WatchRevocationsResponse | PreEncoded) => {
        const oldest = revocationsIn(res)[0]?.revokedAt;
        if (oldest) feedDelay!.observe(Math.max(0, Date.now() - timestampMs(oldest)) / 1000);
      };
      return (req: never, call) =>
        tap(
          h(req, call) as AsyncIterable<WatchRevocationsResponse | PreEncoded>,
          feedDelay ? observe : () => {},
          (err) => child(err === undefined ? (0 as Code) : codeOfError(err)).count.inc(),
        );
    }
    return async (req: never, call) => {
      const t0 = performance.now();
      let code = 0 as Code;
      try {
        return await (h(req, call) as Promise<unknown>);
      } catch (err) {
        code = codeOfError(err);
        throw err;
      } finally {
        const c = child(code);
        c.count.inc();
        c.seconds.observe((performance.now() - t0) / 1000);
      }
    };
  }

  /** Bound children by surface and reason: the hot path does no label hashing. */
  private readonly introspectionChildren = new Map<string, Counter.Internal>();

  introspection(surface: Surface, v: { active: boolean; reason?: string; inactiveReason?: string }): void {
    const reason = v.active ? "" : (v.reason ?? v.inactiveReason ?? "unknown_token").toLowerCase();
    const key = `${surface}|${reason}`;
    let child = this.introspectionChildren.get(key);
    if (!child) {
      child = this.introspections.labels({ surface, result: v.active ? "active" : "inactive", reason });
      this.introspectionChildren.set(key, child);
    }
    child.inc();
  }

  /** self: an agent's signed Issue; oauth: /oauth2/token; issuer: an API key's Issue. */
  issuance(kind: "self" | "oauth" | "issuer"): void {
    this.issued.inc({ kind });
  }

  close(): void {
    this.loop.disable();
  }
}

/** The /metrics handler: an admin key or the dedicated metrics key, as a bearer credential. */
export function metricsEndpoint(metrics: Metrics, auth: Authenticator, metricsKey: string) {
  const dedicated = metricsKey ? hashSecret(metricsKey) : undefined;
  return async (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const authorization = req.headers.authorization;
    const presented = /^Bearer (\S+)$/i.exec(authorization ?? "")?.[1];
    let allowed = false;
    if (presented && dedicated) {
      const h = hashSecret(presented);
      allowed = h.length === dedicated.length && timingSafeEqual(h, dedicated);
    }
    if (!allowed) {
      const caller = await auth.authenticate(authorization, peerOf(req)).catch(() => null);
      if (caller === undefined || caller === null) {
        res.writeHead(401, { "www-authenticate": 'Bearer realm="agentid metrics"', "content-type": "text/plain" });
        res.end(caller === null ? "unknown or malformed key\n" : "send Authorization: Bearer <admin key or AGENTID_METRICS_KEY>\n");
        return;
      }
      if (caller.kind !== "key" || caller.role !== "admin") {
        res.writeHead(403, { "content-type": "text/plain" });
        res.end("metrics are for admin keys and AGENTID_METRICS_KEY\n");
        return;
      }
    }
    const body = await metrics.registry.metrics();
    res.writeHead(200, { "content-type": metrics.registry.contentType });
    res.end(body);
  };
}
