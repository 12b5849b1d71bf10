import { describe, expect, it } from "vitest";
import { trustScore, type TrustInputs } from "../src/domain/trust.js";

// Pure logic: the score's arithmetic.
const HOUR = 3_600_000;
const base: TrustInputs = {
  agentAgeMs: 30 * 86_400_000,
  windowMs: HOUR,
  horizonMs: 24 * HOUR,
  minBaseline: 100,
  requestsRecent: 0,
  requestsPrior: 0,
  priorWindows: 23,
  requestSource: "reported usage",
  scopeViolations: 0,
  incidents: 0,
  novel: [],
  known: 0,
};
const factor = (i: TrustInputs, name: string) => trustScore(i).factors.find((f) => f.name === name)!;

describe("trust score", () => {
  it("is 100 for an established, well-behaved agent and 90 for a new one", () => {
    expect(trustScore(base).score).toBe(100);
    expect(trustScore({ ...base, agentAgeMs: 0 }).score).toBe(90);
    expect(trustScore({ ...base, agentAgeMs: 3.5 * 86_400_000 }).score).toBe(95);
    expect(trustScore(base).factors.map((f) => f.name)).toEqual(["scope_adherence", "request_rate", "novel_access", "incidents", "age"]);
  });

  it("takes 10 per scope violation (at most 50) and 20 per incident (at most 60), clamped at 0", () => {
    expect(trustScore({ ...base, scopeViolations: 2 }).score).toBe(80);
    expect(trustScore({ ...base, scopeViolations: 20 }).score).toBe(50);
    expect(trustScore({ ...base, incidents: 1 }).score).toBe(80);
    expect(trustScore({ ...base, incidents: 10, scopeViolations: 10 }).score).toBe(0);
    expect(factor({ ...base, scopeViolations: 3 }, "scope_adherence")).toMatchObject({ count: 3, windowMs: 24 * HOUR });
  });

  it("penalises a request rate far above the agent's own baseline, only once a baseline exists", () => {
    const steady = { ...base, requestsPrior: 2300, requestsRecent: 100 };
    expect(trustScore(steady).score).toBe(100);
    const burst = factor({ ...steady, requestsRecent: 500 }, "request_rate");
    expect(burst).toMatchObject({ contribution: -20, count: 500, windowMs: HOUR, baseline: 100 });
    expect(burst.detail).toContain("5.0x the baseline of 100.0 per 1h");
    expect(trustScore({ ...base, requestsPrior: 50, requestsRecent: 5000 }).score).toBe(100);
    // A young agent's baseline is over the windows it has lived, not the whole horizon.
    expect(factor({ ...base, requestsPrior: 400, priorWindows: 2, requestsRecent: 400 }, "request_rate").contribution).toBe(0);
  });

  it("weighs never-used scopes by how established the agent's pattern was", () => {
    const novel = ["scope:customers:read", "scope:customers:export"];
    // Settled: a long history with known scopes; the same novelty from a new agent is exploration.
    const settled = factor({ ...base, requestsPrior: 4600, known: 2, novel }, "novel_access");
    expect(settled).toMatchObject({ contribution: -30, count: 2, baseline: 2 });
    expect(settled.detail).toContain("scope:customers:read");
    expect(factor({ ...base, requestsPrior: 200, known: 2, novel: novel.slice(0, 1) }, "novel_access").contribution).toBe(-8);
    expect(factor({ ...base, requestsPrior: 0, known: 0, novel }, "novel_access").contribution).toBe(0);
  });
});
