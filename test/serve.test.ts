import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { bearer, clientsFor, createTestDatabase, publicKey } from "./support/harness.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { StreamRecorder } from "./support/feed.js";
import { runCli, spawnServe, type ServeProcess } from "./support/process.js";
import { freePort } from "./support/global-setup.js";

const started: ServeProcess[] = [];
const ADMIN = newSecret(API_KEY_PREFIX);
const interceptors = [bearer(ADMIN)];
afterAll(() => {
  for (const s of started) s.proc.kill("SIGKILL");
});

async function serve(env: Record<string, string>) {
  const s = await spawnServe({ LOG_LEVEL: "info", AGENTID_ADMIN_KEY: ADMIN, ...env });
  started.push(s);
  return s;
}

describe("agentid serve", () => {
  it("runs two servers on one DATABASE_URL side by side, and stops cleanly on SIGTERM", async () => {
    const DATABASE_URL = await createTestDatabase();
    const [a, b] = await Promise.all([serve({ DATABASE_URL }), serve({ DATABASE_URL })]);
    const ca = clientsFor(createGrpcTransport({ baseUrl: `http://127.0.0.1:${a.grpcPort}`, interceptors }));
    const cb = clientsFor(createConnectTransport({ baseUrl: b.url, httpVersion: "1.1", interceptors }));

    const { agent } = await ca.agents.registerAgent({ name: "shared", publicKey: publicKey() });
    const { token } = await cb.tokens.issue({ agentId: agent!.agentId });
    expect((await ca.tokens.introspect({ token })).active).toBe(true);

    // A watcher on B sees a revocation made through A.
    const rec = new StreamRecorder(cb, 0n);
    await rec.until((r) => r.progress.length > 0);
    const { revision } = await ca.tokens.revoke({ target: { case: "agentId", value: agent!.agentId }, reason: "x" });
    await rec.until((r) => r.revisions.includes(revision));
    expect((await cb.tokens.introspect({ token })).active).toBe(false);

    // SIGTERM: the open stream ends without an error, the process exits 0.
    b.proc.kill("SIGTERM");
    expect(await b.exited).toBe(0);
    await rec.done;
    expect(rec.error).toBeUndefined();
    expect(b.output()).toContain('"msg":"stopped"');
    a.proc.kill("SIGTERM");
    expect(await a.exited).toBe(0);
  });

  it("says clearly when the database cannot be reached, without the password or a stack trace", async () => {
    const port = await freePort();
    const res = await new Promise<{ code: number | null; out: string }>((resolve) => {
      void spawnServe({ DATABASE_URL: `postgres://u:hunter2@127.0.0.1:${port}/db` }).catch((err: Error) =>
        resolve({ code: 1, out: err.message }),
      );
    });
    expect(res.out).toContain(`cannot reach PostgreSQL at postgres://u:***@127.0.0.1:${port}/db`);
    expect(res.out).not.toContain("hunter2");
    expect(res.out).not.toMatch(/\n\s+at /);
  });

  it("rejects bad configuration with the variable named", async () => {
    const res = await runCli(["serve"], { AGENTID_GRPC_PORT: "lots" });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("AGENTID_GRPC_PORT must be an integer");
  });

  it("creates an admin key on first start and, with no terminal, keeps it in a file only its owner can read, never in the logs", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "agentid-data-"));
    const s = await spawnServe({ LOG_LEVEL: "info", DATABASE_URL: await createTestDatabase(), AGENTID_DATA_DIR: dataDir });
    started.push(s);
    const file = join(dataDir, "admin-key");
    for (let i = 0; i < 100 && !s.output().includes(file); i++) await new Promise((r) => setTimeout(r, 50));
    expect(s.output()).toContain(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const key = readFileSync(file, "utf8").trim();
    expect(key).toMatch(/^ak_[0-9A-Za-z]{49}$/);
    expect(s.output()).not.toContain(key);
    const c = clientsFor(createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", interceptors: [bearer(key)] }));
    expect((await c.agents.listAgents({})).agents).toEqual([]);
    s.proc.kill("SIGTERM");
    expect(await s.exited).toBe(0);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("starts an embedded PostgreSQL with no DATABASE_URL, and keeps data across restarts", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "agentid-data-"));
    chmodSync(dataDir, 0o755);
    try {
      const env = { DATABASE_URL: "", AGENTID_DATA_DIR: dataDir, AGENTID_PG_PORT: String(await freePort()) };
      const first = await serve(env);
      const c1 = clientsFor(createConnectTransport({ baseUrl: first.url, httpVersion: "1.1", interceptors }));
      const { agent } = await c1.agents.registerAgent({ name: "durable", publicKey: publicKey() });
      first.proc.kill("SIGTERM");
      expect(await first.exited).toBe(0);

      const second = await serve(env);
      const c2 = clientsFor(createConnectTransport({ baseUrl: second.url, httpVersion: "1.1", interceptors }));
      expect((await c2.agents.getAgent({ agentId: agent!.agentId })).agent?.name).toBe("durable");
      second.proc.kill("SIGTERM");
      expect(await second.exited).toBe(0);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
    // Two first starts of PostgreSQL on a shared machine: a hang guard, not a timing claim.
  }, 120_000);
});

describe("the README's CLI tour", () => {
  it("registers, issues, introspects, watches and revokes", async () => {
    const s = await serve({ DATABASE_URL: await createTestDatabase() });
    const env = { AGENTID_URL: s.url, AGENTID_API_KEY: ADMIN };
    const help = await runCli(["--help"], env);
    expect(help.stdout).toContain("agent register");
    for (const cmd of [["serve"], ["agent", "register"], ["agent", "list"], ["token", "issue"], ["token", "introspect"], ["revoke"], ["watch"]]) {
      const r = await runCli([...cmd, "--help"], env);
      expect(r.code, cmd.join(" ")).toBe(0);
      expect(r.stdout).toContain("Usage: agentid " + cmd.join(" "));
    }

    const keyFile = join(mkdtempSync(join(tmpdir(), "agentid-key-")), "agent.pem");
    const reg = await runCli(["agent", "register", "--name", "tour-bot", "--key-out", keyFile, "--label", "team=docs", "--scope", "orders:read"], env);
    expect(reg.code, reg.stderr).toBe(0);
    const agentId = reg.stdout.trim();
    expect(agentId).toMatch(/^agt_/);
    expect((await runCli(["agent", "list"], env)).stdout).toContain(`${agentId}\tACTIVE\ttour-bot`);

    const issued = await runCli(["token", "issue", "--agent", agentId, "--scope", "orders:read", "--ttl", "15m"], env);
    expect(issued.code, issued.stderr).toBe(0);
    const token = issued.stdout.trim();
    expect(token).toMatch(/^at_/);
    const intro = await runCli(["token", "introspect", "-", "--scope", "orders:read"], env, token);
    expect(JSON.parse(intro.stdout)).toMatchObject({ active: true, agentId, scopes: ["orders:read"] });

    const watch = new StreamRecorder(clientsFor(createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", interceptors })), 0n);
    await watch.until((r) => r.progress.length > 0);
    const { spawn } = await import("node:child_process");
    const { bin } = await import("./support/process.js");
    const watcher = spawn(process.execPath, [bin, "watch"], { env: { ...process.env, ...env } });
    let lines = "";
    watcher.stdout.on("data", (d) => (lines += d));

    const kill = await runCli(["agent", "kill", agentId, "--reason", "tour"], env);
    expect(kill.code, kill.stderr).toBe(0);
    expect(kill.stdout).toMatch(/revoked at revision \d+ \(1 token\(s\) made inactive\)/);
    const after = await runCli(["token", "introspect", token], env);
    expect(JSON.parse(after.stdout)).toMatchObject({ active: false, inactiveReason: "INACTIVE_REASON_AGENT_REVOKED" });
    const refused = await runCli(["token", "issue", "--agent", agentId], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("FailedPrecondition");

    await watch.until((r) => r.events.some((e) => e.target.value === agentId));
    const deadline = Date.now() + 10_000;
    while (!lines.includes(`revoked agent ${agentId}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(lines).toContain(`revoked agent ${agentId}`);
    expect(lines).toContain('reason "tour"');
    watcher.kill("SIGINT");
    await watch.stop();

    const bad = await runCli(["token", "issue", "--agent", "nope"], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("InvalidArgument: agent_id");
    s.proc.kill("SIGTERM");
    await s.exited;
    // Two dozen CLI processes, each starting Node and tsx: a hang guard, not a timing claim.
  }, 180_000);
});

describe("the operator's CLI", () => {
  it("manages keys and policies, and lets an agent issue its own token with its key", async () => {
    const s = await serve({ DATABASE_URL: await createTestDatabase() });
    const env = { AGENTID_URL: s.url, AGENTID_API_KEY: ADMIN };
    const created = await runCli(["key", "create", "--name", "orders-api", "--role", "resource_server", "--audience", "orders"], env);
    expect(created.code, created.stderr).toBe(0);
    const rsKey = created.stdout.trim();
    expect(rsKey).toMatch(/^ak_/);
    const keyId = /key_id (key_\w+)/.exec(created.stderr)![1]!;
    expect((await runCli(["key", "list"], env)).stdout).toContain(`${keyId}\tresource_server\tactive\torders-api\torders`);

    expect((await runCli(["policy", "create", "--name", "abuse", "--scope-violations", "0", "--window", "1h"], env)).code).toBe(0);
    expect((await runCli(["policy", "list"], env)).stdout).toContain("abuse\tmore than 0 scope violations within 3600s");

    const dir = mkdtempSync(join(tmpdir(), "agentid-key-"));
    const reg = await runCli(["agent", "register", "--name", "self", "--key-out", join(dir, "a.pem"), "--scope", "orders:read", "--audience", "orders"], env);
    const agentId = reg.stdout.trim();
    const deployment = /deployment (dep_\w+)/.exec(reg.stderr)?.[1] ?? "";
    expect(deployment).toMatch(/^dep_/);
    // No API key at all: the agent signs its request, for this deployment.
    const own = await runCli(["token", "issue", "--agent", agentId, "--key", join(dir, "a.pem"), "--deployment", deployment, "--scope", "orders:read", "--audience", "orders"], {
      AGENTID_URL: s.url,
      AGENTID_API_KEY: "",
    });
    expect(own.code, own.stderr).toBe(0);
    const token = own.stdout.trim();

    // One scope violation through the resource server's key trips the policy.
    const rsEnv = { AGENTID_URL: s.url, AGENTID_API_KEY: rsKey };
    const denied = await runCli(["token", "introspect", token, "--scope", "orders:write"], rsEnv);
    expect(JSON.parse(denied.stdout).inactiveReason).toBe("INACTIVE_REASON_SCOPE_NOT_GRANTED");
    let state = "";
    for (let i = 0; i < 50 && !state.includes("REVOKED"); i++) {
      state = (await runCli(["agent", "list", "--status", "revoked"], env)).stdout;
    }
    expect(state).toContain(`${agentId}\tREVOKED`);
    const trust = await runCli(["agent", "trust", agentId], env);
    expect(trust.stdout).toMatch(/score \d+/);
    expect(trust.stdout).toContain("scope_adherence");

    expect((await runCli(["key", "revoke", keyId], env)).code).toBe(0);
    const refused = await runCli(["token", "introspect", token], rsEnv);
    expect(refused.stderr).toContain("Unauthenticated");
    s.proc.kill("SIGTERM");
    await s.exited;
  }, 180_000);
});
