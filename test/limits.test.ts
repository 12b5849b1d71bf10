import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "./support/harness.js";
import { spawnServe, type ServeProcess } from "./support/process.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { connectCall, envelope, grpcCall, grpcWebCall, memoryOf, resetPeak, type RawAnswer } from "./support/raw.js";

// A 128 MiB run of zeros gzips to about 130 kB: small on the wire, huge once inflated.
const BOMB = gzipSync(Buffer.alloc(128 * 1024 * 1024), { level: 9 });
const PATH = "/agentid.v1.AgentService/ListAgents";
const UNAUTHENTICATED = 16;
const RESOURCE_EXHAUSTED = 8;

describe("a decompression bomb", () => {
  let s: ServeProcess;
  const admin = newSecret(API_KEY_PREFIX);
  beforeAll(async () => {
    s = await spawnServe({ DATABASE_URL: await createTestDatabase(), AGENTID_ADMIN_KEY: admin, LOG_LEVEL: "warn" });
  });
  afterAll(() => {
    s?.proc.kill("SIGKILL");
  });

  const senders: [string, (headers: Record<string, string>) => Promise<RawAnswer>][] = [
    ["gRPC port", (h) => grpcCall(s.grpcPort, PATH, envelope(BOMB, true), { "grpc-encoding": "gzip", ...h })],
    ["gRPC over h2c, HTTP port", (h) => grpcCall(s.httpPort, PATH, envelope(BOMB, true), { "grpc-encoding": "gzip", ...h })],
    ["gRPC-Web, HTTP port", (h) => grpcWebCall(s.httpPort, PATH, envelope(BOMB, true), { "grpc-encoding": "gzip", ...h })],
    ["Connect, HTTP port", (h) => connectCall(s.httpPort, PATH, BOMB, { "content-encoding": "gzip", ...h })],
  ];

  it("is refused with no key, a bad key and a good key, on every protocol, and memory stays bounded", async () => {
    resetPeak(s.proc.pid!);
    const before = memoryOf(s.proc.pid!);
    const cases: { key: string; headers: Record<string, string>; want: (number | string)[] }[] = [
      { key: "none", headers: {}, want: [UNAUTHENTICATED, "unauthenticated"] },
      { key: "bad", headers: { authorization: `Bearer ${newSecret(API_KEY_PREFIX)}` }, want: [UNAUTHENTICATED, "unauthenticated"] },
      { key: "good", headers: { authorization: `Bearer ${admin}` }, want: [RESOURCE_EXHAUSTED, "resource_exhausted"] },
    ];
    for (const c of cases) {
      for (const [name, send] of senders) {
        // Several at once, as an attacker would.
        const answers = await Promise.all(Array.from({ length: 4 }, () => send(c.headers)));
        for (const a of answers) expect(c.want, `${name}, ${c.key} key: ${JSON.stringify(a)}`).toContain(a.code);
      }
    }
    const after = memoryOf(s.proc.pid!);
    // One bomb inflated fully would add 128 MiB; 48 of them were sent. The server keeps at most
    // the configured request limit (256 KiB) per request.
    expect(after.peak - before.rss, `RSS ${before.rss} -> peak ${after.peak}`).toBeLessThan(96 * 1024 * 1024);
    // Still serving.
    const ok = await connectCall(s.httpPort, PATH, Buffer.alloc(0), { authorization: `Bearer ${admin}` });
    expect(ok.code).toBe("ok");
  }, 120_000);
});
