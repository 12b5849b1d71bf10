import type { Db, Role } from "../store/database.js";
import { findActiveKeyByHash } from "../store/api-keys.js";
import { DomainError } from "../domain/errors.js";
import { API_KEY_PREFIX, hashSecret, isWellFormedSecret } from "../domain/ids.js";

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

const unauthenticated = (why: string) => new DomainError("unauthenticated", why);

/**
 * Resolves `authorization: Bearer <api key>` to a Caller. Answers are cached briefly so that the
 * hot path does not pay a database round trip per call; a revoked key stops working on this
 * replica at once and on the others within cacheMs.
 */
export class Authenticator {
  /** By SHA-256 of the key: secrets are not kept, not even in memory. */
  private cache = new Map<string, { caller: Caller; until: number }>();
  private inFlight = new Map<string, ReturnType<typeof findActiveKeyByHash>>();

  constructor(
    private readonly db: Db,
    private readonly cacheMs = 5000,
    private readonly maxEntries = 10_000,
  ) {}

  /** undefined when no credentials were sent; throws UNAUTHENTICATED for bad ones. */
  async authenticate(authorization: string | undefined): Promise<Caller | undefined> {
    if (authorization === undefined || authorization === "") return undefined;
    const m = /^Bearer (\S+)$/i.exec(authorization);
    if (!m) throw unauthenticated("authorization must be \"Bearer <api key>\"");
    const secret = m[1]!;
    if (!isWellFormedSecret(secret, API_KEY_PREFIX)) throw unauthenticated("the API key is malformed (bad shape or checksum)");
    const now = Date.now();
    const hash = hashSecret(secret);
    const cacheKey = hash.toString("base64");
    const hit = this.cache.get(cacheKey);
    if (hit && hit.until > now) return hit.caller;
    // Concurrent misses for one key share one read: a fleet of streams reconnecting at once with
    // the same key must not queue thousands of identical lookups on the pool Revoke needs.
    let lookup = this.inFlight.get(cacheKey);
    if (!lookup) {
      this.inFlight.set(cacheKey, (lookup = findActiveKeyByHash(this.db, hash)));
      void lookup.finally(() => this.inFlight.delete(cacheKey)).catch(() => {});
    }
    const key = await lookup;
    if (!key) {
      this.cache.delete(cacheKey);
      throw unauthenticated("unknown or revoked API key");
    }
    const caller: Caller = { kind: "key", keyId: key.id, role: key.role, audiences: key.audiences };
    if (this.cache.size >= this.maxEntries) this.cache.clear();
    this.cache.set(cacheKey, { caller, until: now + this.cacheMs });
    return caller;
  }

  /** Drops cached answers for a key that was just revoked here. */
  forget(keyId: string): void {
    for (const [k, e] of this.cache) if (e.caller.kind === "key" && e.caller.keyId === keyId) this.cache.delete(k);
  }
}
