import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "./support/harness.js";
import { isGrpcJsBuiltIn, METHODS, runFuzz } from "./support/fuzz.js";
import { startFuzzTarget, type FuzzTarget } from "./support/fuzz-setup.js";

// The short, deterministic run of the request fuzzer (the long one: npm run fuzz). A real server
// process, so that its memory is its own.
const REQUESTS = 2000;
const RSS_BOUND = 768 * 1024 * 1024;

let t: FuzzTarget;
beforeAll(async () => {
  t = await startFuzzTarget(await createTestDatabase());
}, 90_000);
afterAll(async () => {
  t?.fuzzer.close();
  await t?.replica.kill();
});

describe("the request fuzzer (seed 1)", () => {
  it(
    "gets no INTERNAL or UNKNOWN from any RPC on any protocol, and the server stays up with bounded memory",
    async () => {
      const { peakRss } = await runFuzz(t.fuzzer, { seed: 1, count: REQUESTS, concurrency: 8, serverPid: t.replica.process.pid });
      const f = t.fuzzer;
      const findings = f.findings.filter((o) => !isGrpcJsBuiltIn(o));
      expect(findings.slice(0, 10), JSON.stringify(findings.slice(0, 10), null, 1)).toEqual([]);
      // Both servers answered, on every protocol.
      for (const p of ["grpc", "grpc-h2-http-port", "connect-proto", "connect-json", "connect-get", "grpc-web"]) expect(f.protocols.has(p), p).toBe(true);
      expect(t.replica.output.join("")).not.toContain("unhandled error");
      expect(f.rpcs.size).toBe(METHODS.length);
      await t.alive();
      expect(t.replica.process.exitCode).toBeNull();
      expect(peakRss).toBeLessThan(RSS_BOUND);
    },
    120_000,
  );
});
