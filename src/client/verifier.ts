import { hash } from "node:crypto";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { InactiveReason, TokenService } from "../../gen/agentid/v1/token_pb.js";
import type { RevocationEvent } from "../../gen/agentid/v1/revocation_pb.js";
import { ActivityService } from "../../gen/agentid/v1/activity_pb.js";
import { isWellFormedToken, TOKEN_LENGTH } from "../domain/ids.js";
import { TokenCache, type CachedToken } from "./cache.js";
import { UsageReporter, type UsageDecision, type UsageMetrics, type UsageOptions } from "./usage.js";
import { FeedFollower } from "./feed.js";
import { createTransport, type TransportOptions } from "./transport.js";

export interface VerifierOptions extends TransportOptions {
  /** One agentid replica, e.g. "http://agentid:50051". */
  endpoint?: string;
  /** Or several: the feed follows any one of them, introspection fails over between them. */
  endpoints?: string[];
  /** Replicas for the feed only (default: endpoints). */
  feedEndpoints?: string[];
  /** This resource server's audience: a token must list it. Unset: any audience. */
  audience?: string;
  /**
   * What to do once the feed has been silent for longer than staleAfterMs:
   * "strict" stops trusting the cache (see whenStale), "best_effort" keeps the last known state.
   */
  mode?: "strict" | "best_effort";
  /** Staleness budget: the server bookmarks every second, so a few seconds of silence is an outage. */
  staleAfterMs?: number;
  /** Strict mode, when stale: "deny" fails closed; "introspect" asks the server on every call. */
  whenStale?: "deny" | "introspect";
  /** Cached active answers, at most (least recently used go first). */
  cacheSize?: number;
  /** Per-call deadline for network introspection. */
  introspectTimeoutMs?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * Report what verify decided (counts per token, scope and outcome) to agentid about once a
   * second, so the server sees what the cache hides: request rates, refused scopes, new scopes.
   * On by default when `audience` is set (the server accepts reports only for the key's
   * audiences); false turns it off.
   */
  reportUsage?: boolean | UsageOptions;
  /** Called when the feed stream fails (it reconnects on its own); for logs. */
  onFeedError?: (err: Error, endpoint: string) => void;
}

export type InactiveCause =
  | "malformed"
  | "unknown_token"
  | "expired"
  | "revoked"
  | "agent_revoked"
  | "scope_not_granted"
  | "audience_mismatch"
  /** Strict mode with whenStale "deny": the feed is silent past staleAfterMs. */
  | "stale"
  /** No replica answered. */
  | "unavailable";

export type VerifyResult =
  | {
      active: true;
      tokenId: string;
      agentId: string;
      scopes: string[];
      audiences: string[];
      expiresAt: Date;
      /** Where the answer came from. */
      source: "cache" | "network";
    }
  | { active: false; reason: InactiveCause };

export interface VerifierMetrics extends UsageMetrics {
  cacheHits: number;
  cacheMisses: number;
  cacheSize: number;
  networkIntrospections: number;
  introspectionErrors: number;
  /** Everything up to this revision has been applied from the feed. */
  feedRevision: bigint;
  /** Highest revision any server reported minus feedRevision (0 when caught up). */
  feedLagRevisions: bigint;
  /** Milliseconds since the feed last proved it was current (a Progress bookmark). */
  feedLagMs: number;
  /** For the last event: arrival time minus revoked_at (includes clock skew between hosts). */
  lastEventDelayMs: number;
  reconnects: number;
  feedResets: number;
  stale: boolean;
  /** Revocations remembered against answers still on their way: tokens until they expire, agents briefly. */
  revocationMarks: number;
}

/** A revocation as the feed delivered it: one token, or every token of an agent (a kill). */
export type Revocation = { tokenId: string; agentId?: undefined } | { agentId: string; tokenId?: undefined };

/** What a request needs, and what it does (named in the usage report, for the agent's trail). */
export interface VerifyOptions {
  scope?: string;
  /** The request's operation in your words, e.g. "tools/call countdown" (at most 200 printable ASCII characters). */
  operation?: string;
}

export interface Verifier {
  verify(token: string, opts?: VerifyOptions): Promise<VerifyResult>;
  /**
   * Calls `listener` for every revocation the feed delivers, once the cache has dropped it (so a
   * verify from inside the listener already refuses). Returns the function that unsubscribes.
   */
  onRevocation(listener: (r: Revocation) => void): () => void;
  /** Resolves once the feed has caught up for the first time. */
  ready(): Promise<void>;
  metrics(): VerifierMetrics;
  /** Sends the usage counts now instead of at the next tick (tests, shutdown). */
  flushUsage(): Promise<void>;
  close(): Promise<void>;
}

/** What ReportUsage accepts as an operation (checked here: one bad line would fail every report). */
export const isOperation = (s: string) => s.length <= 200 && /^[\x20-\x7e]*$/.test(s);

const REASONS: Record<InactiveReason, InactiveCause> = {
  [InactiveReason.UNSPECIFIED]: "unknown_token",
  [InactiveReason.UNKNOWN_TOKEN]: "unknown_token",
  [InactiveReason.MALFORMED]: "malformed",
  [InactiveReason.EXPIRED]: "expired",
  [InactiveReason.REVOKED]: "revoked",
  [InactiveReason.AGENT_REVOKED]: "agent_revoked",
  [InactiveReason.SCOPE_NOT_GRANTED]: "scope_not_granted",
};

function activeResult(e: CachedToken, source: "cache" | "network"): VerifyResult {
  return { active: true, tokenId: e.tokenId, agentId: e.agentId, scopes: e.scopes, audiences: e.audiences, expiresAt: new Date(e.expiresAt), source };
}

/** A verifier for a resource server: a local cache of active answers, kept honest by the feed. */
export function createVerifier(o: VerifierOptions): Verifier {
  const endpoints = o.endpoints ?? (o.endpoint ? [o.endpoint] : []);
  if (endpoints.length === 0) throw new Error("createVerifier: endpoint or endpoints is required");
  const mode = o.mode ?? "strict";
  const staleAfterMs = o.staleAfterMs ?? 5000;
  const whenStale = o.whenStale ?? "deny";
  const timeoutMs = o.introspectTimeoutMs ?? 5000;
  const cache = new TokenCache(o.cacheSize ?? 10_000);
  const transports = endpoints.map((e) => createTransport(e, o));
  const tokens: Client<typeof TokenService>[] = transports.map((t) => createClient(TokenService, t));
  const usage =
    o.reportUsage !== false && o.audience !== undefined
      ? new UsageReporter(
          transports.map((t) => createClient(ActivityService, t)),
          o.audience,
          typeof o.reportUsage === "object" ? o.reportUsage : {},
          timeoutMs,
        )
      : undefined;
  const m = { cacheHits: 0, cacheMisses: 0, networkIntrospections: 0, introspectionErrors: 0, feedResets: 0, lastEventDelayMs: 0 };
  let knownHead = 0n;
  let next = 0;
  /** When each introspection awaiting its answer was sent (they decide how long agents' marks are kept). */
  const inflight = new Map<object, number>();
  const listeners = new Set<(r: Revocation) => void>();
  const tell = (r: Revocation) => {
    for (const l of listeners) {
      try {
        l(r);
      } catch {
        // A listener's failure must not stop the feed or the other listeners.
      }
    }
  };
  let readyResolve: () => void;
  const readyPromise = new Promise<void>((r) => (readyResolve = r));

  const feed = new FeedFollower({
    ...o,
    endpoints: o.feedEndpoints ?? endpoints,
    idleTimeoutMs: Math.max(staleAfterMs * 2, 3000),
    onEvent(e: RevocationEvent) {
      m.lastEventDelayMs = e.revokedAt ? Date.now() - timestampMs(e.revokedAt) : 0;
      if (e.revision > knownHead) knownHead = e.revision;
      const t = e.target;
      switch (t.case) {
        case "tokenId":
          cache.revokeToken(t.value, e.revision, e.expiresAt ? timestampMs(e.expiresAt) : Number.MAX_SAFE_INTEGER);
          if (listeners.size > 0) tell({ tokenId: t.value });
          break;
        case "agentId":
          cache.revokeAgent(t.value, Date.now());
          if (listeners.size > 0) tell({ agentId: t.value });
          break;
        case undefined:
          break;
        default: {
          const never: never = t;
          void never;
        }
      }
    },
    onProgress(revision) {
      if (revision > knownHead) knownHead = revision;
      cache.forgetAgentMarks(inflight.size === 0 ? Date.now() : Math.min(...inflight.values()));
      readyResolve();
    },
    onReset() {
      m.feedResets++;
    },
    onError: o.onFeedError,
  });
  feed.start();
  const pruner = setInterval(() => cache.prune(Date.now()), 30_000);
  pruner.unref();

  const isStale = () => feed.lastProgressAt === 0 || Date.now() - feed.lastProgressAt > staleAfterMs;

  /** Audience and scope, checked locally; counted for the usage report. */
  function decide(e: CachedToken, key: string, scope: string | undefined, operation: string, source: "cache" | "network", now: number): VerifyResult {
    let decision: UsageDecision = "allowed";
    let r: VerifyResult;
    if (o.audience !== undefined && !e.audiences.includes(o.audience)) r = { active: false, reason: (decision = "audience_mismatch") };
    else if (scope !== undefined && !e.scopes.includes(scope)) r = { active: false, reason: (decision = "scope_not_granted") };
    else if (source === "cache") r = (e.hit ??= Object.freeze(activeResult(e, "cache"))) as VerifyResult;
    else r = activeResult(e, "network");
    usage?.countCached(e, key, scope ?? "", operation, decision, now);
    return r;
  }

  async function introspect(token: string) {
    // Start at a rotating replica; fail over on errors that another replica may not have.
    const start = next++;
    let last: unknown;
    for (let i = 0; i < tokens.length; i++) {
      try {
        m.networkIntrospections++;
        return await tokens[(start + i) % tokens.length]!.introspect({ token }, { timeoutMs });
      } catch (err) {
        m.introspectionErrors++;
        last = err;
        const code = ConnectError.from(err).code;
        if (code !== Code.Unavailable && code !== Code.DeadlineExceeded && code !== Code.Internal && code !== Code.Unknown) break;
      }
    }
    throw last;
  }

  /** A cache miss: the checksum, then the network. */
  async function verifyMiss(token: string, key: string, opts: VerifyOptions): Promise<VerifyResult> {
    if (!isWellFormedToken(token)) return { active: false, reason: "malformed" };
    m.cacheMisses++;
    let res;
    const call = {};
    inflight.set(call, Date.now());
    try {
      res = await introspect(token);
    } catch {
      return { active: false, reason: "unavailable" };
    } finally {
      inflight.delete(call);
    }
    if (res.revision > knownHead) knownHead = res.revision;
    if (!res.active) {
      const reason = REASONS[res.inactiveReason] ?? "unknown_token";
      // An unknown token cannot be attributed to anyone: not counted.
      if (reason === "expired" || reason === "revoked" || reason === "agent_revoked") usage?.count("", key, opts.scope ?? "", opts.operation ?? "", reason, Date.now());
      return { active: false, reason };
    }
    const entry: CachedToken = {
      tokenId: res.tokenId,
      agentId: res.agentId,
      scopes: res.scopes,
      audiences: res.audiences,
      expiresAt: res.expiresAt ? timestampMs(res.expiresAt) : Date.now(),
      revision: res.revision,
      // Every field from the start: entries keep one shape, so the hit path stays monomorphic.
      hit: undefined,
      usage: undefined,
      used: false,
    };
    // The feed may have revoked the token while the answer was on its way.
    const admitted = cache.admit(key, entry);
    if (admitted !== "cached") {
      usage?.count(entry.tokenId, key, opts.scope ?? "", opts.operation ?? "", admitted, Date.now());
      return { active: false, reason: admitted };
    }
    return decide(entry, key, opts.scope, opts.operation ?? "", "network", Date.now());
  }

  const MALFORMED: VerifyResult = Object.freeze({ active: false, reason: "malformed" });
  const EXPIRED: VerifyResult = Object.freeze({ active: false, reason: "expired" });

  return {
    // Not async: a cache hit is answered with an already-resolved promise and no async frame.
    verify(token, opts = {}) {
      // Cheap rejections first; the checksum is checked on a cache miss only (a hit is a token
      // that passed it, as SHA-256 cannot collide).
      if (opts.operation !== undefined && !isOperation(opts.operation)) {
        return Promise.reject(new TypeError("verify: operation must be at most 200 printable ASCII characters"));
      }
      if (token.length !== TOKEN_LENGTH) return Promise.resolve(MALFORMED);
      const key = hash("sha256", token, "binary");
      const stale = mode === "strict" && isStale();
      if (stale && whenStale === "deny") return Promise.resolve({ active: false, reason: isWellFormedToken(token) ? "stale" : "malformed" });
      if (!stale) {
        const now = Date.now();
        const hit = cache.get(key, now);
        if (hit === "expired") {
          usage?.count("", key, opts.scope ?? "", opts.operation ?? "", "expired", now);
          return Promise.resolve(EXPIRED);
        }
        if (hit) {
          m.cacheHits++;
          return Promise.resolve(decide(hit, key, opts.scope, opts.operation ?? "", "cache", now));
        }
      }
      return verifyMiss(token, key, opts);
    },
    onRevocation(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    ready: () => readyPromise,
    metrics() {
      const lag = knownHead - feed.revision;
      return {
        ...m,
        cacheSize: cache.size,
        revocationMarks: cache.marks,
        feedRevision: feed.revision,
        feedLagRevisions: lag > 0n ? lag : 0n,
        feedLagMs: feed.lastProgressAt === 0 ? Number.POSITIVE_INFINITY : Date.now() - feed.lastProgressAt,
        reconnects: feed.reconnects,
        stale: isStale(),
        ...(usage?.metrics() ?? { usageReported: 0, usageRejected: 0, usageDropped: 0, usagePending: 0, usageReportErrors: 0 }),
      };
    },
    flushUsage: () => usage?.flush() ?? Promise.resolve(),
    async close() {
      clearInterval(pruner);
      await Promise.all([feed.close(), usage?.close()]);
    },
  };
}
