// Streams are bound to their API key (issue 9.5, 9.7): revoking the key ends them with
// UNAUTHENTICATED, at once on the replica that revoked it and within the key-check window on the
// others; one key may hold only so many streams; refusals say how long to back off.
import { afterEach, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { createTestDatabase, startHarness, type Clients, type Harness } from "./support/harness.js";
import { StreamRecorder } from "./support/feed.js";
import type { Config } from "../src/server/config.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
});

async function harness(databaseUrl: string, config: Partial<Config>): Promise<Harness> {
  const h = await startHarness({ databaseUrl, config });
  cleanup.push(() => h.close());
  return h;
}

async function rsKey(h: Harness, name: string) {
  const { key, secret } = await createClient(KeyService, h.grpcTransport).createApiKey({ name, role: Role.RESOURCE_SERVER, audiences: ["orders"] });
  return { keyId: key!.keyId, secret };
}

function recorder(c: Clients): StreamRecorder {
  const r = new StreamRecorder(c, 0n);
  cleanup.push(() => r.stop());
  return r;
}

/** Resolves with the error a stream ended with (a hang guard, not a timing claim). */
async function endedWith(r: StreamRecorder): Promise<ConnectError> {
  await r.done;
  return ConnectError.from(r.error);
}

describe("streams end with their credentials", () => {
  it("ends a key's streams with UNAUTHENTICATED the moment it is revoked on this replica, on both transports", async () => {
    // No periodic key check within the test: only the revoke hook can end them.
    const h = await harness(await createTestDatabase(), { feedKeyCheckMs: 3_600_000 });
    const k = await rsKey(h, "doomed");
    const other = await rsKey(h, "bystander");
    const streams = [recorder(h.as(k.secret).grpc), recorder(h.as(k.secret).connect)];
    const bystander = recorder(h.as(other.secret).grpc);
    await Promise.all([...streams, bystander].map((r) => r.until((x) => x.progress.length > 0)));
    await createClient(KeyService, h.grpcTransport).revokeApiKey({ keyId: k.keyId });
    for (const r of streams) {
      const err = await endedWith(r);
      expect(err.code).toBe(Code.Unauthenticated);
      expect(err.rawMessage).toMatch(/API key .* revoked/);
    }
    // Other keys' streams carry on.
    expect(bystander.ended).toBe(false);
    expect(h.ctx.feed.watcherCount).toBe(1);
  });

  it("ends them on other replicas at their next key check (one query for all streams)", async () => {
    const databaseUrl = await createTestDatabase();
    const a = await harness(databaseUrl, { feedKeyCheckMs: 3_600_000 });
    const b = await harness(databaseUrl, { feedKeyCheckMs: 200 });
    const k = await rsKey(a, "revoked elsewhere");
    const streams = [recorder(b.as(k.secret).grpc), recorder(b.as(k.secret).connect)];
    await Promise.all(streams.map((r) => r.until((x) => x.progress.length > 0)));
    await createClient(KeyService, a.grpcTransport).revokeApiKey({ keyId: k.keyId });
    for (const r of streams) expect((await endedWith(r)).code).toBe(Code.Unauthenticated);
    expect(b.ctx.feed.watcherCount).toBe(0);
  });
});

describe("per-key stream limit", () => {
  it("refuses one key's streams past the limit with RESOURCE_EXHAUSTED and a retry-after, leaving room for other keys", async () => {
    const h = await harness(await createTestDatabase(), { maxWatchersPerKey: 2 });
    const greedy = await rsKey(h, "greedy");
    const modest = await rsKey(h, "modest");
    const held = [recorder(h.as(greedy.secret).grpc), recorder(h.as(greedy.secret).connect)];
    await Promise.all(held.map((r) => r.until((x) => x.progress.length > 0)));
    for (const transport of ["grpc", "connect"] as const) {
      const refused = recorder(h.as(greedy.secret)[transport]);
      const err = await endedWith(refused);
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(err.rawMessage).toMatch(/AGENTID_MAX_WATCHERS_PER_KEY/);
      expect(Number(err.metadata.get("retry-after-ms"))).toBeGreaterThan(0);
    }
    const fine = recorder(h.as(modest.secret).grpc);
    await fine.until((x) => x.progress.length > 0);
    expect(h.ctx.feed.stats().refusals).toBe(2);
  });
});
