import { describe, expect, it } from "vitest";
import { trustScore } from "../src/domain/trust.js";

// Pure logic: the score's arithmetic.
const base = { agentAgeMs: 30 * 86_400_000, introspections24h: 0, scopeViolations24h: 0, incidents24h: 0, introspectionsLastHour: 0, introspectionsPrior23h: 0 };

describe("trust score", () => {
  it("is 100 for an established, well-behaved agent and 90 for a new one", () => {
    expect(trustScore(base).score).toBe(100);
    expect(trustScore({ ...base, agentAgeMs: 0 }).score).toBe(90);
    expect(trustScore({ ...base, agentAgeMs: 3.5 * 86_400_000 }).score).toBe(95);
  });

  it("takes 10 per scope violation (at most 50) and 20 per incident (at most 60), clamped at 0", () => {
    expect(trustScore({ ...base, scopeViolations24h: 2 }).score).toBe(80);
    expect(trustScore({ ...base, scopeViolations24h: 20 }).score).toBe(50);
    expect(trustScore({ ...base, incidents24h: 1 }).score).toBe(80);
    expect(trustScore({ ...base, incidents24h: 10, scopeViolations24h: 10 }).score).toBe(0);
  });

  it("penalises a request rate far above the agent's own baseline, only once a baseline exists", () => {
    const steady = { ...base, introspectionsPrior23h: 2300, introspectionsLastHour: 100 };
    expect(trustScore(steady).score).toBe(100);
    const burst = trustScore({ ...steady, introspectionsLastHour: 500 });
    expect(burst.factors.find((f) => f.name === "request_rate")!.contribution).toBe(-20);
    expect(trustScore({ ...base, introspectionsPrior23h: 50, introspectionsLastHour: 5000 }).score).toBe(100);
  });
});
