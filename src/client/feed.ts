import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { RevocationService, type RevocationEvent } from "../../gen/agentid/v1/revocation_pb.js";
import { createTransport, type TransportOptions } from "./transport.js";

export interface FeedFollowerOptions extends TransportOptions {
  /** Replicas to follow, tried in turn; any one is enough. */
  endpoints: string[];
  /** Start after this revision (default 0: every retained revocation). */
  afterRevision?: bigint;
  /** Reconnect backoff: full jitter between 0 and min(maxMs, initialMs * 2^attempt). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Which endpoint to try first (default: a random one, to spread followers over replicas). */
  startIndex?: number;
  /** A stream silent this long is presumed dead and reopened (the server bookmarks every second). */
  idleTimeoutMs?: number;
  onEvent(event: RevocationEvent): void;
  /**
   * Every event up to `revision` this follower may see has been delivered (a resource_server key
   * sees only its audiences' events, so the revisions it receives have gaps; bookmarks do not).
   */
  onProgress?(revision: bigint): void;
  /** The cursor was compacted away (OUT_OF_RANGE): the follower replays from 0. */
  onReset?(): void;
  onError?(err: ConnectError, endpoint: string): void;
}

/**
 * Follows WatchRevocations across a list of replicas: on any error or end of stream it moves to
 * the next replica after a jittered backoff (at least the server's retry-after-ms when it refused
 * the stream) and resumes after the last revision it saw.
 */
export class FeedFollower {
  /** Everything up to here has been delivered: the resume point. */
  revision: bigint;
  /** Date.now() of the last Progress message; 0 before the first. */
  lastProgressAt = 0;
  /** Streams reopened after the first. */
  reconnects = 0;
  private closed = false;
  private abort: AbortController | undefined;
  private sleeping: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  private readonly clients;
  private running: Promise<void> | undefined;

  constructor(private readonly o: FeedFollowerOptions) {
    if (o.endpoints.length === 0) throw new Error("FeedFollower: at least one endpoint is required");
    this.revision = o.afterRevision ?? 0n;
    // A transport of its own, so the stream never queues behind introspection calls.
    this.clients = o.endpoints.map((e) => ({ endpoint: e, client: createClient(RevocationService, createTransport(e, o)) }));
  }

  start(): void {
    this.running ??= this.run();
  }

  private async run(): Promise<void> {
    const initial = this.o.backoff?.initialMs ?? 100;
    const max = this.o.backoff?.maxMs ?? 5000;
    const idleMs = this.o.idleTimeoutMs ?? 10_000;
    let attempt = 0;
    let i = this.o.startIndex ?? Math.floor(Math.random() * this.clients.length);
    let first = true;
    while (!this.closed) {
      const { endpoint, client } = this.clients[i % this.clients.length]!;
      if (!first) this.reconnects++;
      first = false;
      const abort = (this.abort = new AbortController());
      let idle = setTimeout(() => abort.abort(), idleMs);
      let reset = false;
      let retryAfterMs = 0;
      try {
        for await (const res of client.watchRevocations({ afterRevision: this.revision }, { signal: abort.signal })) {
          clearTimeout(idle);
          idle = setTimeout(() => abort.abort(), idleMs);
          attempt = 0;
          // A batch: its events in revision order, then (when set) a bookmark covering them.
          for (const e of res.events) {
            if (e.revision > this.revision) this.revision = e.revision;
            this.o.onEvent(e);
          }
          if (res.progress) {
            const p = res.progress.revision;
            if (p > this.revision) this.revision = p;
            this.lastProgressAt = Date.now();
            this.o.onProgress?.(p);
          }
        }
      } catch (err) {
        if (this.closed) break;
        const ce = ConnectError.from(err);
        if (ce.code === Code.OutOfRange && this.revision !== 0n) {
          // Older than the retained log: the complete current set is a replay from 0.
          this.revision = 0n;
          this.o.onReset?.();
          reset = true;
        } else {
          this.o.onError?.(ce, endpoint);
          retryAfterMs = retryAfter(ce);
        }
      } finally {
        clearTimeout(idle);
      }
      if (this.closed) break;
      if (reset) continue;
      i++;
      await this.sleep(reconnectDelay(attempt++, retryAfterMs, initial, max));
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeping = undefined;
        resolve();
      }, ms);
      this.sleeping = { timer, resolve };
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort?.abort();
    if (this.sleeping) {
      clearTimeout(this.sleeping.timer);
      this.sleeping.resolve();
    }
    await this.running;
  }
}

/** The server's back-off advice on a refused stream (the `retry-after-ms` trailer), or 0. */
export function retryAfter(err: ConnectError): number {
  const v = Number(err.metadata.get("retry-after-ms"));
  return Number.isFinite(v) && v > 0 ? Math.min(v, 300_000) : 0;
}

/**
 * How long to wait before reconnect number `attempt` (0-based): exponential backoff with full
 * jitter, between 0 and min(maxMs, initialMs * 2^attempt). A server that refused the stream with
 * retry-after-ms gets at least that, plus jitter over up to as long again (or the backoff ceiling,
 * if larger), so that followers refused together do not come back together.
 */
export function reconnectDelay(attempt: number, retryAfterMs: number, initialMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
  if (retryAfterMs > 0) return retryAfterMs + random() * Math.max(retryAfterMs, ceiling);
  return random() * ceiling;
}
