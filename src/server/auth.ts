import type { Db, Role } from "../store/database.js";
import { findActiveKeyByHash } from "../store/api-keys.js";
import { DomainError } from "../domain/errors.js";
import { API_KEY_PREFIX, hashSecret, isWellFormedSecret } from "../domain/ids.js";
import { PeerBuckets, peerAddress } from "./limits.js";
import type { Reporter } from "../domain/activity.js";

/** Who is calling: an API key with its role, or an agent that proved it holds its key. */
export type Caller =
  | { kind: "key"; keyId: string; role: Role; audiences: string[] }
  | { kind: "agent"; agentId: string };

export function actorOf(c: Caller | undefined): string {
  if (!c) return "anonymous";
  return c.kind === "key" ? `key:${c.keyId}` : `agent:${c.agentId}`;
}

/** The audiences a caller is bound to (a resource_server key's); undefined: unbound. */
export function boundAudiences(c: Caller | undefined): string[] | undefined {
  return c?.kind === "key" && c.role === "resource_server" ? c.audiences : undefined;
}

/** The caller as a reporter of agents' behaviour: a resource_server key sees only its audiences; admins see all. */
export function reporterOf(c: Caller | undefined): Reporter {
  if (c?.kind !== "key") throw new DomainError("permission_denied", "only API keys report activity");
  return { principal: actorOf(c), audiences: boundAudiences(c) };
}

const unauthenticated = (why: string) => new DomainError("unauthenticated", why);

export interface AuthenticatorOptions {
  /** How long a found key is believed without asking the database again. */
  cacheMs?: number;
  /**
   * How long an unknown or revoked key is remembered as such. Keys are 256-bit random secrets, so
   * an unknown one cannot become valid later (and a revoked one never does): only the cost of
   * asking again is saved.
   */
  negativeCacheMs?: number;
  maxEntries?: number;
  /** Failed authentications a peer address may make per minute (and at once). */
  failuresPerMinute?: number;
  /** Calls without an API key (an agent's signed Issue) a peer address may make per minute. */
  anonymousPerMinute?: number;
}

/**
 * Resolves `authorization: Bearer <api key>` to a Caller. Answers are cached briefly so that the
 * hot path does not pay a database round trip per call; a revoked key stops working on this
 * replica at once and on the others within cacheMs. Failures cost the caller: unknown keys are
 * remembered (no second database read), and a peer address that fails too often is refused
 * before any lookup, while keys it has already proved keep working.
 */
export class Authenticator {
  /** By SHA-256 of the key: secrets are not kept, not even in memory. */
  private cache = new Map<string, { caller: Caller; until: number }>();
  private inFlight = new Map<string, ReturnType<typeof findActiveKeyByHash>>();
  private unknown = new Map<string, number>();
  private readonly cacheMs: number;
  private readonly negativeCacheMs: number;
  private readonly maxEntries: number;
  private readonly failures: PeerBuckets;
  private readonly anonymous: PeerBuckets;

  constructor(
    private readonly db: Db,
    opts: AuthenticatorOptions = {},
  ) {
    this.cacheMs = opts.cacheMs ?? 5000;
    this.negativeCacheMs = opts.negativeCacheMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.failures = new PeerBuckets(opts.failuresPerMinute ?? 60);
    this.anonymous = new PeerBuckets(opts.anonymousPerMinute ?? 600);
  }

  /** Takes one of the peer's calls without an API key; RESOURCE_EXHAUSTED when none is left. */
  admitAnonymous(peer: string, method: string): void {
    const addr = peerAddress(peer);
    if (!this.anonymous.take(addr)) throw this.anonymous.refusal(addr, `too many ${method} calls without an API key`);
  }

  /**
   * For credentials checked elsewhere (an OAuth client assertion): takes one of the peer's failed
   * authentications up front (RESOURCE_EXHAUSTED when none is left), so that attempts in flight
   * at once cannot all pass; the returned function gives it back when they did not fail.
   */
  chargeAttempt(peer: string): () => void {
    const addr = peerAddress(peer);
    if (!this.failures.take(addr)) throw this.failures.refusal(addr, "too many failed authentications");
    return () => this.failures.refund(addr);
  }

  /**
   * undefined when no credentials were sent; throws UNAUTHENTICATED for bad ones. With a peer
   * (the transports' check before the body is read), failures are counted against its address
   * and an address over its allowance gets RESOURCE_EXHAUSTED without a lookup.
   */
  async authenticate(authorization: string | undefined, peer: string | undefined): Promise<Caller | undefined> {
    if (authorization === undefined || authorization === "") return undefined;
    const m = /^Bearer (\S+)$/i.exec(authorization);
    const secret = m?.[1];
    const wellFormed = secret !== undefined && isWellFormedSecret(secret, API_KEY_PREFIX);
    const now = Date.now();
    const cacheKey = wellFormed ? hashSecret(secret).toString("base64") : "";
    const hit = wellFormed ? this.cache.get(cacheKey) : undefined;
    if (hit && hit.until > now) return hit.caller;
    // Past the cache of good keys (every call's path), the peer's address counts.
    const addr = peer === undefined ? undefined : peerAddress(peer);
    const failed = (why: string) => {
      if (addr !== undefined) this.failures.take(addr);
      return unauthenticated(why);
    };
    if (addr !== undefined && !this.failures.has(addr, now)) throw this.failures.refusal(addr, "too many failed authentications");
    if (!m) throw failed("authorization must be \"Bearer <api key>\"");
    if (!wellFormed) throw failed("the API key is malformed (bad shape or checksum)");
    const known = this.unknown.get(cacheKey);
    if (known !== undefined && known > now) throw failed("unknown or revoked API key");
    // Concurrent misses for one key share one read: a fleet of streams reconnecting at once with
    // the same key must not queue thousands of identical lookups on the pool Revoke needs.
    let lookup = this.inFlight.get(cacheKey);
    // The call that makes the read pays for it first (refunded when the key is good), so that
    // many attempts in flight at once cannot all pass the check above; joiners add no read.
    const pays = !lookup && addr !== undefined;
    if (!lookup) {
      if (pays && !this.failures.take(addr!, now)) throw this.failures.refusal(addr!, "too many failed authentications");
      this.inFlight.set(cacheKey, (lookup = findActiveKeyByHash(this.db, hashSecret(secret))));
      void lookup.finally(() => this.inFlight.delete(cacheKey)).catch(() => {});
    }
    let key;
    try {
      key = await lookup;
    } catch (err) {
      if (pays) this.failures.refund(addr!);
      throw err;
    }
    if (!key) {
      this.cache.delete(cacheKey);
      remember(this.unknown, cacheKey, now + this.negativeCacheMs, this.maxEntries);
      throw unauthenticated("unknown or revoked API key");
    }
    if (pays) this.failures.refund(addr!);
    const caller: Caller = { kind: "key", keyId: key.id, role: key.role, audiences: key.audiences };
    remember(this.cache, cacheKey, { caller, until: now + this.cacheMs }, this.maxEntries);
    return caller;
  }

  /** Drops cached answers for a key that was just revoked here. */
  forget(keyId: string): void {
    for (const [k, e] of this.cache) if (e.caller.kind === "key" && e.caller.keyId === keyId) this.cache.delete(k);
  }
}

/** Sets a bounded map's entry, dropping the oldest one when full (never the whole map: an attacker must not be able to flush it). */
function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  if (map.size >= max) map.delete(map.keys().next().value!);
  map.set(key, value);
}
