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
  refusal(key: string, what: string): LimitRefusal {
    const wait = this.retryAfterSeconds(key);
    return new LimitRefusal(`${what} from ${key}; retry in ${wait}s`, wait);
  }
}

/** A per-address limit's refusal, with the wait its message names (HTTP endpoints send it as Retry-After). */
export class LimitRefusal extends DomainError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super("resource_exhausted", message);
  }
}

/** "address:port" of an HTTP request's client, with an IPv6 address in brackets (see peerAddress). */
export function peerOf(req: { socket: { remoteAddress?: string; remotePort?: number } }): string {
  const a = req.socket.remoteAddress ?? "";
  return a.includes(":") ? `[${a}]:${req.socket.remotePort}` : `${a}:${req.socket.remotePort}`;
}

/**
 * Whom a limit counts, from a transport's peer string: "127.0.0.1:5000", "[::1]:5000" (Connect)
 * or "ipv4:127.0.0.1:5000" / "ipv6:[::1]:5000" (grpc-js). Per address, not per connection, so a
 * new connection buys no fresh allowance; and an IPv6 client by its /64 ("2001:db8:1:2::/64"),
 * the block a single host or subscriber is routinely given, so its addresses buy none either.
 * IPv4-mapped IPv6 addresses count as the IPv4 address.
 */
export function peerAddress(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, "");
  const v6 = /^\[([^\]]*)\]/.exec(p);
  // "host:port" has one colon; a bare IPv6 address has several.
  let host = v6 ? v6[1]! : /^[^:]+:\d+$/.test(p) ? p.slice(0, p.lastIndexOf(":")) : p;
  host = host.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");
  return host.includes(":") ? (ipv6Slash64(host) ?? host) : host;
}

/** The /64 an IPv6 address is in, as its first four groups ("2001:db8:0:0::/64"); undefined if malformed. */
function ipv6Slash64(address: string): string | undefined {
  let a = address.replace(/%.*$/, "").toLowerCase();
  // A trailing dotted IPv4 part (64:ff9b::192.0.2.1) is the last two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (v4) {
    const [b0, b1, b2, b3] = v4.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, v4.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const halves = a.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves[1] ? halves[1].split(":") : [];
  const groups = halves.length === 2 ? [...head, ...Array<string>(Math.max(0, 8 - head.length - tail.length)).fill("0"), ...tail] : head;
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(":")}::/64`;
}
