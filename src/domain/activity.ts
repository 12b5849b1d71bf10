import type { Logger } from "pino";
import type { Db } from "../store/database.js";
import type { Sequencer } from "../store/sequencer.js";
import { findAgent } from "../store/agents.js";
import { activityWindow, addActivity, countReports, insertReport, insertTrustScore, type TrustScoreRecord } from "../store/activity.js";
import { listPolicies, type PolicyRecord } from "../store/policies.js";
import { notFound, failedPrecondition } from "./errors.js";
import { revoke } from "./revocation.js";
import { appendAuditEntry } from "../audit/append.js";
import { trustScore } from "./trust.js";

export type ReportKind = "scope_violation" | "anomalous_request";

export interface Evaluation {
  trust: TrustScoreRecord;
  revoked: boolean;
  revokedBy: string;
}

const MINUTE_MS = 60_000;

/**
 * Counts activity and applies policies as it arrives. Introspections are counted in memory and
 * written once a second (Introspect is the hot path); incidents are written at once and trigger a
 * trust recomputation and policy evaluation, so a policy revokes within the same request.
 */
export class ActivityTracker {
  private pending = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly sequencer: Sequencer,
    private readonly flushMs = 1000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.flushMs);
    this.timer.unref();
  }

  countIntrospection(agentId: string): void {
    this.pending.set(agentId, (this.pending.get(agentId) ?? 0) + 1);
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    const minute = new Date(Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS);
    try {
      await addActivity(this.db, "introspections", [...batch].map(([agentId, n]) => ({ agentId, minute, n })));
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, agents: batch.size }, "activity: dropped introspection counts");
    }
  }

  async report(agentId: string, kind: ReportKind, detail: string, reportedBy: string): Promise<Evaluation> {
    const agent = await findAgent(this.db, agentId);
    if (!agent) throw notFound(`agent ${agentId}`);
    const minute = new Date(Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS);
    await this.db.transaction().execute(async (tx) => {
      await insertReport(tx, { agentId, kind, detail, reportedBy });
      await addActivity(tx, kind === "scope_violation" ? "scope_violations" : "incidents", [{ agentId, minute, n: 1 }]);
      await appendAuditEntry(tx, { kind: "activity.reported", agentId, actor: reportedBy, reason: kind, details: { kind, detail } });
    });
    return this.evaluate(agentId);
  }

  /** Recomputes the agent's trust score, records it, and revokes the agent if a policy says so. */
  async evaluate(agentId: string): Promise<Evaluation> {
    const agent = await findAgent(this.db, agentId);
    if (!agent) throw notFound(`agent ${agentId}`);
    const window = await activityWindow(this.db, agentId);
    const { score, factors } = trustScore({ agentAgeMs: Date.now() - agent.createdAt.getTime(), ...window });
    const trust = await insertTrustScore(this.db, { agentId, score, factors });
    if (agent.status === "REVOKED") return { trust, revoked: true, revokedBy: agent.revokedBy ?? "" };
    for (const p of await listPolicies(this.db)) {
      const evidence = await this.violates(p, agentId, score);
      if (!evidence) continue;
      const by = `policy:${p.name}`;
      await revoke(this.db, this.sequencer, { agentId }, `policy ${p.name}: ${evidence}`, by);
      this.logger.warn({ agentId, policy: p.name, evidence }, "policy revoked agent");
      return { trust, revoked: true, revokedBy: by };
    }
    return { trust, revoked: false, revokedBy: "" };
  }

  private async violates(p: PolicyRecord, agentId: string, score: number): Promise<string | undefined> {
    switch (p.kind) {
      case "scope_violations": {
        const n = await countReports(this.db, agentId, "scope_violation", p.windowSeconds ?? 3600);
        return n > p.threshold ? `${n} scope violations within ${p.windowSeconds}s (threshold ${p.threshold})` : undefined;
      }
      case "trust_below":
        return score < p.threshold ? `trust score ${score} below ${p.threshold}` : undefined;
      default: {
        const never: never = p.kind;
        throw failedPrecondition(`unknown policy kind ${String(never)}`);
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
