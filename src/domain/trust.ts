// The trust score: pure arithmetic over what the store counted, so it is easy to read and test.

export interface TrustInputs {
  agentAgeMs: number;
  introspections24h: number;
  scopeViolations24h: number;
  incidents24h: number;
  introspectionsLastHour: number;
  introspectionsPrior23h: number;
}

export interface TrustFactor {
  name: "scope_adherence" | "request_rate" | "incidents" | "age";
  contribution: number;
  detail: string;
}

const DAY_MS = 86_400_000;
/** A request-rate baseline needs at least this much history to mean anything. */
const MIN_BASELINE = 100;

/** 100 minus penalties, clamped to 0..100; every factor is reported with its contribution. */
export function trustScore(i: TrustInputs): { score: number; factors: TrustFactor[] } {
  const factors: TrustFactor[] = [];

  factors.push({
    name: "scope_adherence",
    contribution: -Math.min(50, 10 * i.scopeViolations24h),
    detail: `${i.scopeViolations24h} scope violation(s) in 24h over ${i.introspections24h} introspection(s)`,
  });

  const baselinePerHour = i.introspectionsPrior23h / 23;
  let rate = 0;
  let rateDetail = `no baseline yet (${i.introspectionsPrior23h} introspections in the prior 23h)`;
  if (i.introspectionsPrior23h >= MIN_BASELINE) {
    const ratio = i.introspectionsLastHour / baselinePerHour;
    rate = ratio > 3 ? -Math.min(30, Math.round(10 * (ratio - 3))) : 0;
    rateDetail = `${i.introspectionsLastHour} in the last hour, ${ratio.toFixed(1)}x the hourly baseline of ${baselinePerHour.toFixed(1)}`;
  }
  factors.push({ name: "request_rate", contribution: rate, detail: rateDetail });

  factors.push({
    name: "incidents",
    contribution: -Math.min(60, 20 * i.incidents24h),
    detail: `${i.incidents24h} reported incident(s) in 24h`,
  });

  // A new identity is unproven: -10, fading to 0 over its first week.
  const ageDays = i.agentAgeMs / DAY_MS;
  factors.push({
    name: "age",
    contribution: -Math.round(Math.max(0, 10 * (1 - ageDays / 7)) * 10) / 10,
    detail: `registered ${ageDays.toFixed(2)} day(s) ago`,
  });

  const score = Math.max(0, Math.min(100, 100 + factors.reduce((s, f) => s + f.contribution, 0)));
  return { score, factors };
}
