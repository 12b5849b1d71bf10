import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { type ActivityService, type UsageRecordSchema, UsageOutcome } from "../../gen/agentid/v1/activity_pb.js";
import { InactiveReason } from "../../gen/agentid/v1/token_pb.js";

/** What the verifier decided, as counted for the server. */
export type UsageDecision =
  | "allowed"
  | "scope_not_granted"
  | "audience_mismatch"
  | "expired"
  | "revoked"
  | "agent_revoked";

export interface UsageOptions {
  /** How often counts are sent (default 1000 ms). */
  intervalMs?: number;
  /** Distinct lines (token, scope, decision) kept between reports; beyond it requests are counted as dropped. */
  maxLines?: number;
}

export interface UsageMetrics {
  /** Requests in batches the server acknowledged. */
  usageReported: number;
  /** Records the server did not apply (tokens this key cannot see, stale times). */
  usageRejected: number;
  /** Requests whose counts were never sent: the buffer was full, or they waited more than a day. */
  usageDropped: number;
  /** Lines waiting for the next report. */
  usagePending: number;
  /** Reports that failed (the counts were kept and merged into the next one). */
  usageReportErrors: number;
}

interface Line {
  /** tok_... when known (active answers), else the token's SHA-256 (the cache key: 32 bytes as a latin1 string). */
  tokenId: string;
  sha256: string;
  scope: string;
  /** What the request did, named by the caller of verify ("" when not named). */
  operation: string;
  decision: UsageDecision;
  count: number;
  first: number;
  last: number;
}

const MAX_PER_REQUEST = 10_000;

// The server accepts counts seen within the last day; older ones are dropped here, not sent.
const MAX_AGE_MS = 86_000_000;

/** A line's identity: the token (its id, else its hash), the scope, the operation and the decision. */
const lineKey = (tokenId: string, sha256: string, scope: string, operation: string, decision: UsageDecision) =>
  `${tokenId === "" ? sha256 : tokenId}\n${scope}\n${operation}\n${decision}`;

const OUTCOMES: Record<UsageDecision, [UsageOutcome, InactiveReason]> = {
  allowed: [UsageOutcome.ALLOWED, InactiveReason.UNSPECIFIED],
  scope_not_granted: [UsageOutcome.SCOPE_NOT_GRANTED, InactiveReason.UNSPECIFIED],
  audience_mismatch: [UsageOutcome.AUDIENCE_MISMATCH, InactiveReason.UNSPECIFIED],
  expired: [UsageOutcome.INACTIVE, InactiveReason.EXPIRED],
  revoked: [UsageOutcome.INACTIVE, InactiveReason.REVOKED],
  agent_revoked: [UsageOutcome.INACTIVE, InactiveReason.AGENT_REVOKED],
};

/**
 * Counts the verifier's decisions and sends them to agentid (ActivityService.ReportUsage) about
 * once a second. Counting is a Map update on the caller's turn; sending happens on a timer, one
 * request at a time, so verify never waits for it. When the server cannot be reached, the counts
 * stay and merge with new ones (same token, scope and decision add up); memory is bounded by
 * maxLines, and requests beyond it are counted as dropped and reported as such.
 */
export class UsageReporter {
  private lines = new Map<string, Line>();
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private next = 0;
  /** Bumped whenever lines leave the map, so that counters cached on tokens are known to be stale. */
  private gen = 0;
  private readonly maxLines: number;
  readonly m: UsageMetrics = { usageReported: 0, usageRejected: 0, usageDropped: 0, usagePending: 0, usageReportErrors: 0 };

  constructor(
    private readonly clients: Client<typeof ActivityService>[],
    private readonly audience: string,
    o: UsageOptions = {},
    private readonly timeoutMs = 5000,
  ) {
    this.maxLines = o.maxLines ?? 50_000;
    this.timer = setInterval(() => void this.flush(), o.intervalMs ?? 1000);
    this.timer.unref();
  }

  /** Counts one decision. `tokenId` is empty when only the token's hash is known. */
  count(tokenId: string, sha256: string, scope: string, operation: string, decision: UsageDecision, now: number): Line | undefined {
    const key = lineKey(tokenId, sha256, scope, operation, decision);
    let line = this.lines.get(key);
    if (line !== undefined) {
      line.count++;
      line.last = now;
    } else if (this.lines.size < this.maxLines) {
      this.lines.set(key, (line = { tokenId, sha256, scope, operation, decision, count: 1, first: now, last: now }));
    } else {
      this.dropped++;
    }
    return line;
  }

  /**
   * Counts a decision about a cached token. The hot path: the token's own counter for this scope
   * is kept on its cache entry while it is current, so a hit costs a small Map lookup and no key
   * building.
   */
  countCached(
    e: { tokenId: string; usage?: { gen: number; lines: Map<string, unknown> } },
    sha256: string,
    scope: string,
    operation: string,
    decision: UsageDecision,
    now: number,
  ): void {
    const k = operation !== "" ? `${scope}\n${decision}\n${operation}` : decision === "allowed" ? scope : `${scope}\n${decision}`;
    let u = e.usage;
    if (u !== undefined && u.gen === this.gen) {
      const line = u.lines.get(k) as Line | undefined;
      if (line !== undefined) {
        line.count++;
        line.last = now;
        return;
      }
    }
    const line = this.count(e.tokenId, sha256, scope, operation, decision, now);
    if (line === undefined) return;
    if (u === undefined || u.gen !== this.gen) e.usage = u = { gen: this.gen, lines: new Map() };
    u.lines.set(k, line);
  }

  metrics(): UsageMetrics {
    return { ...this.m, usagePending: this.lines.size, usageDropped: this.m.usageDropped + this.dropped };
  }

  /** Sends what was counted; resolves when the report is answered (or failed and was kept). */
  flush(): Promise<void> {
    this.sending ??= this.send().finally(() => (this.sending = undefined));
    return this.sending;
  }

  private async send(): Promise<void> {
    if (this.lines.size === 0 && this.dropped === 0) return;
    const now = Date.now();
    const batch: Line[] = [];
    this.gen++;
    for (const [key, line] of this.lines) {
      if (batch.length >= MAX_PER_REQUEST) break;
      this.lines.delete(key);
      if (line.first < now - MAX_AGE_MS) {
        this.m.usageDropped += line.count;
        continue;
      }
      batch.push(line);
    }
    const dropped = this.dropped;
    this.dropped = 0;
    const records: MessageInitShape<typeof UsageRecordSchema>[] = batch.map((l) => {
      const [outcome, inactiveReason] = OUTCOMES[l.decision];
      return {
        token: l.tokenId !== "" ? { case: "tokenId" as const, value: l.tokenId } : { case: "tokenSha256" as const, value: Buffer.from(l.sha256, "latin1") },
        audience: this.audience,
        scope: l.scope,
        operation: l.operation,
        outcome,
        inactiveReason,
        count: BigInt(l.count),
        firstSeen: timestampFromMs(l.first),
        lastSeen: timestampFromMs(l.last),
      };
    });
    const client = this.clients[this.next++ % this.clients.length]!;
    try {
      const res = await client.reportUsage({ records, dropped: BigInt(dropped) }, { timeoutMs: this.timeoutMs });
      this.m.usageReported += batch.reduce((s, l) => s + l.count, 0);
      this.m.usageRejected += Number(res.rejected + res.stale);
      this.m.usageDropped += dropped;
    } catch {
      this.m.usageReportErrors++;
      this.gen++;
      this.dropped += dropped;
      for (const l of batch) this.merge(l);
    }
  }

  private merge(l: Line): void {
    const key = lineKey(l.tokenId, l.sha256, l.scope, l.operation, l.decision);
    const cur = this.lines.get(key);
    if (cur) {
      cur.count += l.count;
      cur.first = Math.min(cur.first, l.first);
      cur.last = Math.max(cur.last, l.last);
    } else if (this.lines.size < this.maxLines) {
      this.lines.set(key, l);
    } else {
      this.dropped += l.count;
    }
  }

  /** Stops the timer and sends what is left, once. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
