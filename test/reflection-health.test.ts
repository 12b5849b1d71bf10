// Server reflection lists and describes every mounted service, so `buf curl` calls each method
// with no .proto files; grpc.health.v1 follows the database.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { startHarness, type Harness } from "./support/harness.js";
import { startOwnPostgres, type OwnPostgres } from "../bench/lib/cluster.js";

const run = promisify(execFile);
const BUF = resolve(import.meta.dirname, "../node_modules/.bin/buf");

async function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

const MOUNTED = [
  "agentid.v1.AgentService",
  "agentid.v1.TokenService",
  "agentid.v1.RevocationService",
  "agentid.v1.KeyService",
  "agentid.v1.PolicyService",
  "agentid.v1.ActivityService",
  "agentid.v1.AuditService",
  "envoy.service.auth.v3.Authorization",
  "grpc.health.v1.Health",
];

describe("server reflection", () => {
  let h: Harness;
  let base: string;
  beforeAll(async () => {
    h = await startHarness();
    base = `http://${h.grpcAddress}`;
  });
  afterAll(() => h?.close());

  it("lists every mounted service, health included", async () => {
    const r = await bufCurl(["--list-services", base]);
    expect(r.stderr).toBe("");
    const listed = r.stdout.trim().split("\n");
    for (const s of MOUNTED) expect(listed).toContain(s);
  });

  it("lets buf curl call every method of every service through reflection alone", async () => {
    let calls = 0;
    const methods = (await bufCurl(["--list-methods", base])).stdout.trim().split("\n");
    for (const service of MOUNTED) expect(methods.some((m) => m.startsWith(`${service}/`)), service).toBe(true);
    // Four at a time: each is a buf process of its own.
    for (let i = 0; i < methods.length; i += 4) {
      await Promise.all(
        methods.slice(i, i + 4).map(async (method) => {
          // Streams (Watch*) are cut after a few seconds, the only calls with a deadline: buf's
          // deadline covers its reflection requests too. An empty request may well be refused,
          // but by the server.
          const deadline = /\/Watch/.test(method) ? ["--timeout", "3s"] : [];
          const r = await bufCurl(["-H", `authorization: Bearer ${h.adminKey}`, "-d", "{}", ...deadline, `${base}/${method}`]);
          expect(r.stderr, method).not.toMatch(/resolve|reflection|unknown (service|method)|unimplemented|usage/i);
          if (r.code !== 0) expect(r.stderr, method).toMatch(/"code": "(invalid_argument|not_found|failed_precondition|deadline_exceeded|out_of_range|permission_denied)"/);
          calls++;
        }),
      );
    }
    expect(calls).toBeGreaterThanOrEqual(26);
    const health = await bufCurl(["-d", "{}", `${base}/grpc.health.v1.Health/Check`]);
    expect(JSON.parse(health.stdout)).toEqual({ status: "SERVING" });
  }, 120_000);
});

describe("health", () => {
  let pg: OwnPostgres;
  let h: Harness;
  beforeAll(async () => {
    pg = await startOwnPostgres();
    h = await startHarness({ databaseUrl: pg.url, config: { healthIntervalMs: 100 } });
  });
  afterAll(async () => {
    await h?.close();
    await pg?.destroy();
  });

  const status = async (service = "") =>
    (await bufCurl(["-d", JSON.stringify({ service }), `http://${h.grpcAddress}/grpc.health.v1.Health/Check`])).stdout.trim();

  it("goes NOT_SERVING while the database is unreachable and SERVING when it returns", async () => {
    expect(await status()).toContain('"SERVING"');
    await pg.stop();
    await expect.poll(() => status(), { timeout: 15_000, interval: 100 }).toContain('"NOT_SERVING"');
    expect(await status("agentid.v1.TokenService")).toContain('"NOT_SERVING"');
    await pg.start();
    await expect.poll(() => status(), { timeout: 30_000, interval: 200 }).toContain('"SERVING"');
    expect(await status("envoy.service.auth.v3.Authorization")).toContain('"SERVING"');
  }, 90_000);
});
