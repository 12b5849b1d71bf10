// The trust score: pure arithmetic over what the store counted, so it is easy to read and test.

export interface TrustInputs {
  agentAgeMs: number;
  /** The recent window the rate and novelty are judged over (1 h by default). */
  windowMs: number;
  /** Everything else is counted over the horizon: the window plus the baseline's windows (24 h by default). */
  horizonMs: number;
  /** A baseline needs at least this many requests before the window to mean anything. */
  minBaseline: number;
  /** Requests in the window, and in the windows before it (within the horizon). */
  requestsRecent: number;
  requestsPrior: number;
  /** How many windows of history the prior count covers (a young agent has fewer than the horizon holds); at least 1. */
  priorWindows: number;
  /** Where the requests were counted: resource servers' usage reports, or server-side introspections. */
  requestSource: "reported usage" | "introspections";
  /** Refusals for a scope the token lacks, within the horizon (reported, introspected or reported by hand). */
  scopeViolations: number;
  incidents: number;
  /** Scopes and audiences first used within the window ("scope:x", "audience:y"). */
  novel: string[];
  /** Scopes and audiences used before the window. */
  known: number;
}

export interface TrustFactor {
  name: "scope_adherence" | "request_rate" | "novel_access" | "incidents" | "age";
  contribution: number;
  detail: string;
  /** What the factor counted within windowMs. */
  count: number;
  windowMs: number;
  /** The agent's own baseline it compared with (per window), or 0. */
  baseline: number;
}

const DAY_MS = 86_400_000;

function span(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

/** 100 minus penalties, clamped to 0..100; every factor is reported with its contribution. */
export function trustScore(i: TrustInputs): { score: number; factors: TrustFactor[] } {
  const factors: TrustFactor[] = [];
  const w = span(i.windowMs);
  const h = span(i.horizonMs);

  factors.push({
    name: "scope_adherence",
    contribution: -Math.min(50, 10 * i.scopeViolations),
    detail: `${i.scopeViolations} scope violation(s) in ${h} over ${i.requestsRecent + i.requestsPrior} request(s)`,
    count: i.scopeViolations,
    windowMs: i.horizonMs,
    baseline: 0,
  });

  // The agent's own normal: requests per window before this one.
  const windows = Math.max(1, i.priorWindows);
  const baseline = i.requestsPrior / windows;
  const established = i.requestsPrior >= i.minBaseline;
  let rate = 0;
  let rateDetail = `${i.requestsRecent} ${i.requestSource} in the last ${w}; no baseline yet (${i.requestsPrior} before it, ${i.minBaseline} needed)`;
  if (established) {
    const ratio = i.requestsRecent / baseline;
    rate = ratio > 3 ? -Math.min(30, Math.round(10 * (ratio - 3))) : 0;
    rateDetail = `${i.requestsRecent} ${i.requestSource} in the last ${w}, ${ratio.toFixed(1)}x the baseline of ${baseline.toFixed(1)} per ${w} (over ${windows} window(s))`;
  }
  factors.push({ name: "request_rate", contribution: rate, detail: rateDetail, count: i.requestsRecent, windowMs: i.windowMs, baseline: established ? baseline : 0 });

  // Something never used before weighs more the more settled the agent's pattern was: a new agent
  // explores by nature; a long-steady one that suddenly reads new scopes is the tell.
  const settled = established && i.known > 0 ? Math.min(1, i.requestsPrior / (4 * i.minBaseline)) : 0;
  const novelty = -Math.min(30, Math.round(15 * i.novel.length * settled));
  const names = i.novel.slice(0, 5).join(", ") + (i.novel.length > 5 ? ", ..." : "");
  factors.push({
    name: "novel_access",
    contribution: novelty === 0 ? 0 : novelty,
    detail:
      i.novel.length === 0
        ? `no scope or audience first used in the last ${w} (${i.known} known)`
        : `${i.novel.length} scope(s)/audience(s) first used in the last ${w} (${names}); ${i.known} known before, pattern ${Math.round(settled * 100)}% established`,
    count: i.novel.length,
    windowMs: i.windowMs,
    baseline: i.known,
  });

  factors.push({
    name: "incidents",
    contribution: -Math.min(60, 20 * i.incidents),
    detail: `${i.incidents} reported incident(s) in ${h}`,
    count: i.incidents,
    windowMs: i.horizonMs,
    baseline: 0,
  });

  // A new identity is unproven: -10, fading to 0 over its first week.
  const ageDays = i.agentAgeMs / DAY_MS;
  factors.push({
    name: "age",
    contribution: -Math.round(Math.max(0, 10 * (1 - ageDays / 7)) * 10) / 10,
    detail: `registered ${ageDays.toFixed(2)} day(s) ago`,
    count: 0,
    windowMs: 0,
    baseline: 0,
  });

  for (const f of factors) f.contribution ||= 0; // no -0 in answers
  const score = Math.max(0, Math.min(100, Math.round((100 + factors.reduce((s, f) => s + f.contribution, 0)) * 10) / 10));
  return { score, factors };
}
