import { FeedRefusal } from "./refusal.js";

export interface StreamLimitOptions {
  /** Open watch streams on this replica: in total, per client connection, per API key. */
  maxWatchers: number;
  maxWatchersPerConnection: number;
  maxWatchersPerKey: number;
  /** Subscribers waiting to catch up at once; beyond it they are refused with a retry-after. */
  maxWaiting: number;
}

/**
 * Who may open one more stream: the feed's limits per replica, per connection and per API key,
 * the waiting room's size, and the refusals with their retry-after advice.
 */
export class StreamLimits {
  /** Subscriptions refused here, since start. */
  refusals = 0;
  private readonly perConnection = new Map<string, number>();
  private readonly perKey = new Map<string, number>();
  /** Capacity refusals of the last two seconds, and until when each connection was told to wait. */
  private readonly recent = new RecentCount(1000);
  private readonly refusedUntil = new Map<string, number>();

  constructor(
    private readonly o: StreamLimitOptions,
    /** Streams open on this replica now. */
    private readonly open: () => number,
    /** Subscribers waiting to catch up now. */
    private readonly waiting: () => number,
  ) {}

  /** Counts a stream of `keyId` on `connection`, or throws the FeedRefusal that says which limit it met. */
  admit(keyId: string, connection: string): void {
    const refuse = (message: string, retryAfterMs: number): never => {
      throw this.refusal(connection, message, retryAfterMs);
    };
    if (this.open() >= this.o.maxWatchers) {
      refuse(`this server already has ${this.o.maxWatchers} watch streams open (AGENTID_MAX_WATCHERS); retry later or use another replica`, 5000);
    }
    if ((this.perConnection.get(connection) ?? 0) >= this.o.maxWatchersPerConnection) {
      refuse(
        `this connection already has ${this.o.maxWatchersPerConnection} watch streams open (AGENTID_MAX_WATCHERS_PER_CONNECTION); share one stream per process`,
        5000,
      );
    }
    if ((this.perKey.get(keyId) ?? 0) >= this.o.maxWatchersPerKey) {
      refuse(
        `API key ${keyId} already has ${this.o.maxWatchersPerKey} watch streams open on this server (AGENTID_MAX_WATCHERS_PER_KEY); share one stream per process`,
        5000,
      );
    }
    const waiting = this.waiting();
    if (waiting >= this.o.maxWaiting) {
      refuse(`${waiting} subscribers are already waiting to catch up (AGENTID_FEED_MAX_WAITING); retry after the delay given`, this.retryAfterMs());
    }
    bump(this.perConnection, connection, 1);
    bump(this.perKey, keyId, 1);
  }

  /** A stream admitted with these ended. */
  release(keyId: string, connection: string): void {
    bump(this.perConnection, connection, -1);
    bump(this.perKey, keyId, -1);
  }

  /**
   * A capacity refusal for `connection`. One that comes back before the retry-after it was last
   * given is answered only once that has passed: clients that ignore the advice and retry at once
   * then cost a held stream and a timer each, not a refusal every few hundred milliseconds, and a
   * storm of them dies out instead of taking the CPU the catch-up needs.
   */
  private refusal(connection: string, message: string, retryAfterMs: number): FeedRefusal {
    const now = Date.now();
    this.refusals++;
    this.recent.add(now);
    const until = this.refusedUntil.get(connection) ?? 0;
    const holdMs = until > now ? until - now : 0;
    // Held answers keep the time already given: the connection's next early attempt is answered
    // then too, and one after it starts a new wait.
    if (holdMs === 0) this.refusedUntil.set(connection, now + retryAfterMs);
    return new FeedRefusal("resource_exhausted", message, retryAfterMs, holdMs);
  }

  /** Connections told to wait are remembered only until their wait is over. */
  forgetPastWaits(): void {
    const now = Date.now();
    for (const [c, until] of this.refusedUntil) if (until <= now) this.refusedUntil.delete(c);
  }

  /**
   * Back-off advice for a refused subscriber (the client adds jitter): the time to catch up those
   * waiting and those refused in the last seconds, who will be back, at about 2,000 subscribers a
   * second (what one replica served in bench/feed-storm.ts); at least 1 s, at most 30 s.
   */
  retryAfterMs(): number {
    return Math.min(30_000, 1000 + Math.round((this.waiting() + this.recent.count(Date.now())) / 2));
  }
}

/** Events in the current and the previous window of `windowMs`. */
class RecentCount {
  private start = 0;
  private current = 0;
  private previous = 0;

  constructor(private readonly windowMs: number) {}

  add(now: number): void {
    this.roll(now);
    this.current++;
  }

  count(now: number): number {
    this.roll(now);
    return this.previous + this.current;
  }

  private roll(now: number): void {
    if (now - this.start < this.windowMs) return;
    this.previous = now - this.start < 2 * this.windowMs ? this.current : 0;
    this.current = 0;
    this.start = now;
  }
}

function bump(m: Map<string, number>, k: string, d: number): void {
  const n = (m.get(k) ?? 0) + d;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}
