// What trips a policy: its kind, its threshold, and the agent's score or scope violations within
// its window. The activity tracker asks once per batch of activity, for the agents the batch touched.
import type { Db, PolicyKind } from "../store/database.js";
import { countScopeViolations } from "../store/activity.js";
import { deletePolicy, insertPolicy, listPolicies as listStoredPolicies, type PolicyRecord } from "../store/policies.js";
import { appendAuditEntry, auditedTransaction } from "../audit/append.js";
import { DomainError, invalidArgument, notFound } from "./errors.js";
import type { LogWaker } from "../store/sequencer.js";

const NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;
/** The longest window a scope-violation policy may look back over (refusals are kept that long). */
export const MAX_WINDOW_MS = 30 * 86_400_000;

export async function createPolicy(
  db: Db,
  logs: LogWaker,
  p: { name: string; kind: PolicyKind; threshold: number; windowMs: number | undefined; createdBy: string },
): Promise<PolicyRecord> {
  if (!NAME.test(p.name)) throw invalidArgument("policy.name", "must be 1 to 64 of a-z 0-9 -, starting with a letter or digit");
  let windowSeconds: number | null = null;
  if (p.kind === "scope_violations") {
    if (p.threshold < 0) throw invalidArgument("policy.threshold", "must not be negative");
    if (p.windowMs === undefined || p.windowMs < 1000 || p.windowMs > MAX_WINDOW_MS) {
      throw invalidArgument("policy.window", "must be between 1s and 30 days");
    }
    windowSeconds = Math.floor(p.windowMs / 1000);
  } else {
    if (p.threshold < 1 || p.threshold > 100) throw invalidArgument("policy.threshold", "must be a score from 1 to 100");
    if (p.windowMs !== undefined) throw invalidArgument("policy.window", "applies only to SCOPE_VIOLATIONS policies");
  }
  return auditedTransaction(db, logs, async (tx) => {
    const created = await insertPolicy(tx, { name: p.name, kind: p.kind, threshold: p.threshold, windowSeconds, createdBy: p.createdBy });
    if (!created) throw new DomainError("already_exists", `policy ${p.name} already exists; delete it first to change it`);
    await appendAuditEntry(tx, {
      kind: "policy.created",
      actor: p.createdBy,
      details: { name: created.name, kind: created.kind, threshold: created.threshold, window_seconds: created.windowSeconds },
    });
    return created;
  });
}

export async function removePolicy(db: Db, logs: LogWaker, name: string, actor: string): Promise<void> {
  if (!NAME.test(name)) throw invalidArgument("name", "is not a policy name");
  await auditedTransaction(db, logs, async (tx) => {
    if (!(await deletePolicy(tx, name))) throw notFound(`policy ${name}`);
    await appendAuditEntry(tx, { kind: "policy.deleted", actor, details: { name } });
  });
}

/** Why the policy revokes an agent with this score and these scope violations within its window, or undefined. */
export function policyEvidence(p: PolicyRecord, score: number, scopeViolations: number): string | undefined {
  switch (p.kind) {
    case "scope_violations":
      return scopeViolations > p.threshold ? `${scopeViolations} scope violations within ${p.windowSeconds}s (threshold ${p.threshold})` : undefined;
    case "trust_below":
      return score < p.threshold ? `trust score ${score} below ${p.threshold}` : undefined;
    default: {
      const never: never = p.kind;
      throw new Error(`unknown policy kind ${String(never)}`);
    }
  }
}

/** The policies, with the scope violations per agent each scope-violation policy's window holds. */
export interface PolicyInputs {
  policies: PolicyRecord[];
  violations: Map<number, Map<string, number>>;
}

/**
 * Reads the policies, and the scope violations of `violated` (the agents whose count just grew:
 * no other can newly trip a scope-violation policy) over each such policy's window: one statement
 * per distinct window.
 */
export async function policyInputs(db: Db, violated: readonly string[]): Promise<PolicyInputs> {
  const policies = await listStoredPolicies(db);
  const violations = new Map<number, Map<string, number>>();
  if (violated.length > 0) {
    for (const p of policies) {
      const w = p.windowSeconds ?? 0;
      if (p.kind === "scope_violations" && !violations.has(w)) violations.set(w, await countScopeViolations(db, violated, w));
    }
  }
  return { policies, violations };
}

/** The first policy an agent with this score trips, as `policy:<name>` and the evidence; or undefined. */
export function trippedPolicy(inputs: PolicyInputs, agentId: string, score: number): { by: string; reason: string } | undefined {
  for (const p of inputs.policies) {
    const evidence = policyEvidence(p, score, inputs.violations.get(p.windowSeconds ?? 0)?.get(agentId) ?? 0);
    if (evidence) return { by: `policy:${p.name}`, reason: `policy ${p.name}: ${evidence}` };
  }
  return undefined;
}

/** Every policy, as the routes list them. */
export function listPolicies(db: Db): Promise<PolicyRecord[]> {
  return listStoredPolicies(db);
}
