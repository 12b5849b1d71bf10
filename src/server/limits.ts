import { DomainError } from "../domain/errors.js";

/**
 * Token buckets keyed by peer address: each key holds up to `perMinute` tokens and earns them back
 * at perMinute/60 a second. Memory is bounded: beyond maxKeys the least recently touched bucket
 * is dropped (a dropped bucket is a full one, so eviction only ever forgives).
 */
export class PeerBuckets {
  private buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perMinute: number,
    private readonly maxKeys = 100_000,
  ) {}

  private refill(key: string, now: number): { tokens: number; at: number } {
    let b = this.buckets.get(key);
    if (b) {
      this.buckets.delete(key); // re-inserted below: Map order is recency order
      b.tokens = Math.min(this.perMinute, b.tokens + ((now - b.at) * this.perMinute) / 60_000);
      b.at = now;
    } else {
      b = { tokens: this.perMinute, at: now };
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(key, b);
    return b;
  }

  /** True when the bucket has at least one token left (none is taken). */
  has(key: string, now = Date.now()): boolean {
    return this.refill(key, now).tokens >= 1;
  }

  /** Takes one token; false when there was none. */
  take(key: string, now = Date.now()): boolean {
    const b = this.refill(key, now);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Gives back a token taken for something that turned out not to count. */
  refund(key: string, now = Date.now()): void {
    const b = this.refill(key, now);
    b.tokens = Math.min(this.perMinute, b.tokens + 1);
  }

  /** Seconds until the next token, for the refusal's message. */
  retryAfterSeconds(key: string, now = Date.now()): number {
    const b = this.refill(key, now);
    return Math.max(1, Math.ceil(((1 - b.tokens) * 60) / this.perMinute));
  }

  /** A RESOURCE_EXHAUSTED error that says how long to wait. */
  refusal(key: string, what: string): DomainError {
    return new DomainError("resource_exhausted", `${what} from ${key}; retry in ${this.retryAfterSeconds(key)}s`);
  }
}

/**
 * The address part of a transport's peer string: "127.0.0.1:5000", "[::1]:5000" (Connect) or
 * "ipv4:127.0.0.1:5000" / "ipv6:[::1]:5000" (grpc-js). Limits are per address, not per
 * connection: a new connection must not buy a fresh allowance.
 */
/** "address:port" of an HTTP request's client, with an IPv6 address in brackets (see peerAddress). */
export function peerOf(req: { socket: { remoteAddress?: string; remotePort?: number } }): string {
  const a = req.socket.remoteAddress ?? "";
  return a.includes(":") ? `[${a}]:${req.socket.remotePort}` : `${a}:${req.socket.remotePort}`;
}

export function peerAddress(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, "");
  const v6 = /^\[([^\]]*)\]/.exec(p);
  if (v6) return v6[1]!.replace(/^::ffff:/, "");
  const i = p.lastIndexOf(":");
  const host = i > 0 && p.indexOf(":") === i ? p.slice(0, i) : p;
  return host.replace(/^::ffff:/, "");
}
