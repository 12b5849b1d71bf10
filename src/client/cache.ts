/** An active introspection answer, as cached. */
export interface CachedToken {
  tokenId: string;
  agentId: string;
  scopes: string[];
  audiences: string[];
  expiresAt: number;
  /** The log revision the answer was read at. */
  revision: bigint;
  /** The verifier's answer for a cache hit, built once per entry. */
  hit?: unknown;
  /** The usage reporter's counters for this token, by scope and decision (see usage.ts). */
  usage?: { gen: number; lines: Map<string, unknown> };
  /** Used since it was last considered for eviction (the CLOCK approximation of LRU). */
  used?: boolean;
}

export type Admission = "cached" | "revoked" | "agent_revoked";

/**
 * Active answers keyed by a hash of the token, bounded in size (least recently used goes first,
 * approximated as CLOCK does: a hit sets a flag, eviction spares a flagged entry once),
 * with indexes by token id and agent id so that one feed event evicts at once.
 *
 * It also remembers the revocations the feed has delivered: an answer read at revision R that
 * arrives after an eviction with a higher revision must not be cached, and that is only knowable
 * if the eviction left a mark. A token's mark is kept until the token expires; an agent's only
 * while an introspection sent before the mark may still answer (see forgetAgentMarks), since the
 * server answers every later one from the agent's revoked state.
 */
export class TokenCache {
  private readonly entries = new Map<string, CachedToken>();
  private readonly byToken = new Map<string, string>();
  private readonly byAgent = new Map<string, Set<string>>();
  private readonly revokedTokens = new Map<string, { revision: bigint; expiresAt: number }>();
  /** Agent id to when the mark was made (the caller's clock), in that order. */
  private readonly revokedAgents = new Map<string, number>();

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** Revocations remembered (tokens and agents). */
  get marks(): number {
    return this.revokedTokens.size + this.revokedAgents.size;
  }

  get(key: string, now: number): CachedToken | "expired" | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= now) {
      this.delete(key);
      return "expired";
    }
    // A flag, not a move to the back: a hit costs one Map lookup. Eviction gives used entries a second chance.
    e.used = true;
    return e;
  }

  /**
   * Caches an active answer unless the feed has already revoked the token or its agent. Revocation
   * is permanent, so any mark wins, whatever its revision relative to the answer's: a mark at or
   * below R cannot coexist with an active answer at R, and a mark above R is newer news.
   */
  admit(key: string, e: CachedToken): Admission {
    if (this.revokedAgents.has(e.agentId)) return "agent_revoked";
    if (this.revokedTokens.has(e.tokenId)) return "revoked";
    this.delete(key);
    this.entries.set(key, e);
    this.byToken.set(e.tokenId, key);
    let keys = this.byAgent.get(e.agentId);
    if (!keys) this.byAgent.set(e.agentId, (keys = new Set()));
    keys.add(key);
    while (this.entries.size > this.maxEntries) {
      const [oldest, o] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      if (o.used) {
        o.used = false;
        this.entries.set(oldest, o);
      } else {
        this.entries.set(oldest, o);
        this.delete(oldest);
      }
    }
    return "cached";
  }

  revokeToken(tokenId: string, revision: bigint, expiresAt: number): void {
    this.revokedTokens.set(tokenId, { revision, expiresAt });
    const key = this.byToken.get(tokenId);
    if (key !== undefined) this.delete(key);
  }

  revokeAgent(agentId: string, now: number): void {
    this.revokedAgents.delete(agentId);
    this.revokedAgents.set(agentId, now);
    const keys = this.byAgent.get(agentId);
    if (keys) for (const key of [...keys]) this.delete(key);
  }

  /**
   * Forgets agents' marks made before `since`, the time the oldest introspection still awaiting
   * its answer was sent (now, when none is): every answer still to come was read after the kill.
   */
  forgetAgentMarks(since: number): void {
    for (const [id, at] of this.revokedAgents) {
      if (at >= since) break;
      this.revokedAgents.delete(id);
    }
  }

  /** Forgets what expiry made moot: expired answers and marks of expired tokens. */
  prune(now: number): void {
    for (const [key, e] of this.entries) if (e.expiresAt <= now) this.delete(key);
    for (const [id, t] of this.revokedTokens) if (t.expiresAt <= now) this.revokedTokens.delete(id);
  }

  private delete(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    if (this.byToken.get(e.tokenId) === key) this.byToken.delete(e.tokenId);
    const keys = this.byAgent.get(e.agentId);
    if (keys) {
      keys.delete(key);
      if (keys.size === 0) this.byAgent.delete(e.agentId);
    }
  }
}
