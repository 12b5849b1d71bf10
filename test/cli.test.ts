// The `agentid` command as a new user meets it: spawned through bin/agentid.js, against a server.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import { createTestDatabase, publicKey, startHarness, type Harness } from "./support/harness.js";
import { freePort } from "../bench/lib/cluster.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "bin/agentid.js");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(argv: string[], env: Record<string, string> = {}, input?: string): Promise<Run> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [BIN, ...argv], { env: { ...process.env, AGENTID_URL: "", AGENTID_API_KEY: "", ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.stdin.end(input ?? "");
    child.on("close", (code) => res({ code, stdout, stderr }));
  });
}

let h: Harness;
let env: Record<string, string>;
let dir: string;
let agentId: string;

beforeAll(async () => {
  h = await startHarness();
  env = { AGENTID_URL: `http://127.0.0.1:${h.server.httpPort}`, AGENTID_API_KEY: h.adminKey };
  dir = await mkdtemp(join(tmpdir(), "agentid-cli-"));
  agentId = (await h.grpc.agents.registerAgent({ name: "cli agent", publicKey: publicKey(), allowedScopes: ["read"] })).agent!.agentId;
});
afterAll(async () => {
  await h?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("help and version", () => {
  it.each(["agent", "token", "key", "policy", "audit"])("`agentid %s --help` and the bare group command list the group's commands", async (group) => {
    for (const argv of [[group, "--help"], [group]]) {
      const r = await cli(argv);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: agentid ${group} <command>`);
      expect(r.stdout).toMatch(new RegExp(`^  ${group} \\w+`, "m"));
      expect(r.stderr).toBe("");
    }
  });

  it("names an unknown subcommand and shows its group", async () => {
    const r = await cli(["agent", "frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "agent frobnicate"');
    expect(r.stderr).toContain("agent register");
  });

  it("prints --version from package.json", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-V"]) {
      const r = await cli([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`agentid ${version}\n`);
    }
  });

  it("exits quietly when its output pipe closes early (| head)", async () => {
    const r = await new Promise<Run>((res) => {
      const child = spawn(process.execPath, [BIN, "--help"], { stdio: ["ignore", "pipe", "pipe"] });
      // The reader goes away before the command writes, as `head` does after its lines.
      child.stdout.destroy();
      let stderr = "";
      child.stderr.on("data", (d) => (stderr += d));
      child.on("close", (code) => res({ code, stdout: "", stderr }));
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });
});

describe("answers and exit statuses", () => {
  it("token introspect exits 0 for an active token, 1 for an inactive one, 2 when it cannot ask", async () => {
    const t = await h.grpc.tokens.issue({ agentId, scopes: ["read"] });
    const active = await cli(["token", "introspect", "-"], env, t.token);
    expect(active.code).toBe(0);
    expect(JSON.parse(active.stdout).active).toBe(true);
    const noScope = await cli(["token", "introspect", "-", "--scope", "write"], env, t.token);
    expect(noScope.code).toBe(1);
    expect(JSON.parse(noScope.stdout).inactiveReason).toBe("INACTIVE_REASON_SCOPE_NOT_GRANTED");
    const unknown = await cli(["token", "introspect", "at_unknown"], env);
    expect(unknown.code).toBe(1);
    const away = await cli(["token", "introspect", t.token], { ...env, AGENTID_URL: `http://127.0.0.1:${await freePort()}` });
    expect(away.code).toBe(2);
  });

  it("says when a revoke is a repeat", async () => {
    const t = await h.grpc.tokens.issue({ agentId, scopes: [] });
    const first = await cli(["revoke", "--token-id", t.tokenId, "--reason", "cli test"], env);
    expect(first.stdout).toMatch(/^revoked at revision \d+ \(1 token\(s\) made inactive\)/);
    const again = await cli(["revoke", "--token-id", t.tokenId, "--reason", "cli test"], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^already revoked \(revision \d+\); nothing changed/);
    const victim = (await h.grpc.agents.registerAgent({ name: "victim", publicKey: publicKey() })).agent!.agentId;
    expect((await cli(["agent", "kill", victim, "--reason", "x"], env)).stdout).toMatch(/^revoked at revision/);
    expect((await cli(["agent", "kill", victim, "--reason", "x"], env)).stdout).toMatch(/^already revoked/);
  });

  it("refuses --ttl 0s instead of issuing a default-lifetime token", async () => {
    const r = await cli(["token", "issue", "--agent", agentId, "--ttl", "0s"], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--ttl: must be more than 0/);
    expect(r.stdout).toBe("");
  });

  it("reads --since and --until the same way in agent trust as in audit log", async () => {
    for (const argv of [["agent", "trust", agentId, "--history", "--since", "1h"], ["audit", "log", "--agent", agentId, "--since", "1h"]]) {
      const r = await cli(argv, env);
      expect(r.stderr, argv.join(" ")).toBe("");
      expect(r.code).toBe(0);
    }
    for (const argv of [["agent", "trust", agentId, "--history", "--until", "yesterday"], ["audit", "log", "--until", "yesterday"]]) {
      const r = await cli(argv, env);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('--until: expected RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or an age (90m, 2h, 7d); got "yesterday"');
    }
  });

  it("leaves no key file behind when agent register fails", async () => {
    const file = join(dir, "failed.pem");
    const r = await cli(["agent", "register", "--name", "x", "--key-out", file, "--scope", "has space"], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/InvalidArgument: allowed_scopes/);
    expect(existsSync(file)).toBe(false);
    const ok = join(dir, "ok.pem");
    const good = await cli(["agent", "register", "--name", "x", "--key-out", ok], env);
    expect(good.code).toBe(0);
    expect(readFileSync(ok, "utf8")).toMatch(/BEGIN PRIVATE KEY/);
  });

  it("blames a --checkpoint file that is not a checkpoint, not the log", async () => {
    const garbage = join(dir, "garbage.txt");
    writeFileSync(garbage, "this is not a checkpoint\n");
    const r = await cli(["audit", "verify", "--checkpoint", garbage], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--checkpoint: ${garbage} is not a saved checkpoint`);
    expect(r.stdout).toBe("");
    const missing = await cli(["audit", "verify", "--checkpoint", join(dir, "nope")], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--checkpoint: cannot read .*nope/);
    const saved = join(dir, "cp.txt");
    expect((await cli(["audit", "checkpoint", "--out", saved], env)).code).toBe(0);
    expect((await cli(["audit", "verify", "--checkpoint", saved], env)).code).toBe(0);
  });

  it("explains an AGENTID_URL without a scheme, or pointing at the gRPC port", async () => {
    const noScheme = await cli(["agent", "list"], { ...env, AGENTID_URL: `127.0.0.1:${h.server.httpPort}` });
    expect(noScheme.code).toBe(2);
    expect(noScheme.stderr).toContain(`AGENTID_URL "127.0.0.1:${h.server.httpPort}" needs a scheme: use http://host:port`);
    const grpcPort = await cli(["agent", "list"], { ...env, AGENTID_URL: `http://${h.grpcAddress}` });
    expect(grpcPort.code).toBe(2);
    expect(grpcPort.stderr).toMatch(/is it the gRPC port\? The CLI talks to agentid's HTTP port/);
  });

  it("says plainly when the connection is lost mid-call, not that the server failed", async () => {
    const { createServer } = await import("node:net");
    // Takes the request, then resets the connection without an answer.
    const server = createServer((c) => c.once("data", () => c.resetAndDestroy()));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as { port: number }).port;
      const r = await cli(["agent", "list"], { ...env, AGENTID_URL: `http://127.0.0.1:${port}` });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^agentid: connection lost: the server at http://127\\.0\\.0\\.1:${port} closed the connection before answering \\((read|write) (ECONNRESET|EPIPE)\\); the call may or may not have taken effect`));
      expect(r.stderr).not.toContain("Internal");
    } finally {
      server.close();
    }
  });
});

describe("what the server sends is shown, never acted on by the terminal", () => {
  // Data written before the server refused such text (or by a server one does not trust).
  const HOSTILE = 'rotated\n2026-12-07T10:00:00.000Z  token.revoked  forged line\t\u001b[2K\u009b2J\u007f\u202eevil\u2066';
  // What a terminal would act on: every control but the CLI's own newlines and tabs, DEL, C1, bidi.
  const ACTS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

  it("escapes controls, newlines and bidi overrides in audit log, agent list, agent activity and watch; --json keeps the value", async () => {
    const databaseUrl = await createTestDatabase();
    let server = await startHarness({ databaseUrl });
    const adminKey = server.adminKey;
    const agent = (await server.grpc.agents.registerAgent({ name: "plain", publicKey: publicKey(), allowedAudiences: ["orders"] })).agent!.agentId;
    const t = await server.grpc.tokens.issue({ agentId: agent, audiences: ["orders"] });
    await server.grpc.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "plain" });
    await server.close();
    const sql = new pg.Client({ connectionString: databaseUrl });
    await sql.connect();
    try {
      await sql.query("update audit_entries set reason = $1 where token_id = $2 and kind = 'token.revoked'", [HOSTILE, t.tokenId]);
      await sql.query("update revocations set reason = $1 where token_id = $2", [HOSTILE, t.tokenId]);
      await sql.query("update agents set name = $1 where id = $2", [HOSTILE, agent]);
    } finally {
      await sql.end();
    }
    server = await startHarness({ databaseUrl, config: { adminKey } });
    const e = { AGENTID_URL: `http://127.0.0.1:${server.server.httpPort}`, AGENTID_API_KEY: adminKey };
    try {
      for (const argv of [["audit", "log", "--agent", agent], ["agent", "list"], ["agent", "activity", agent, "--since", "1h"]]) {
        const r = await cli(argv, e);
        expect(r.code, `${argv.join(" ")}: ${r.stderr}`).toBe(0);
        expect(r.stdout, argv.join(" ")).not.toMatch(ACTS);
        expect(r.stdout, argv.join(" ")).not.toContain("\nforged");
        expect(r.stdout.split("\n").filter((l) => l.startsWith("2026-12-07T10:00:00.000Z"))).toEqual([]);
        expect(r.stdout, argv.join(" ")).toMatch(/\\u202e|\\n2026/);
      }
      const j = await cli(["audit", "log", "--agent", agent, "--json"], e);
      expect(j.stdout).not.toMatch(ACTS);
      const reasons = j.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { reason: string }).reason);
      expect(reasons).toContain(HOSTILE);

      const child = spawn(process.execPath, [BIN, "watch"], { env: { ...process.env, ...e }, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      child.stdout.on("data", (d) => (stdout += d));
      const exited = new Promise((r) => child.on("close", r));
      try {
        await expect.poll(() => stdout, { timeout: 15_000 }).toContain("evil");
      } finally {
        child.kill("SIGINT");
        await exited;
      }
      expect(stdout).not.toMatch(ACTS);
      expect(stdout.trim().split("\n")).toHaveLength(1);
    } finally {
      await server.close();
    }
  });
});

describe("watch", () => {
  it("reconnects when the server goes away and resumes without missing or repeating an event", async () => {
    const databaseUrl = await createTestDatabase();
    const httpPort = await freePort();
    let server = await startHarness({ databaseUrl, config: { httpPort } });
    const adminEnv = { AGENTID_URL: `http://127.0.0.1:${httpPort}`, AGENTID_API_KEY: server.adminKey };
    const agent = (await server.grpc.agents.registerAgent({ name: "w", publicKey: publicKey() })).agent!.agentId;
    const a = await server.grpc.tokens.issue({ agentId: agent, scopes: [] });
    const b = await server.grpc.tokens.issue({ agentId: agent, scopes: [] });

    const child = spawn(process.execPath, [BIN, "watch"], { env: { ...process.env, ...adminEnv }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on("close", r));
    try {
      const first = await server.grpc.tokens.revoke({ target: { case: "tokenId", value: a.tokenId }, reason: "one" });
      await expect.poll(() => stdout, { timeout: 15_000 }).toMatch(new RegExp(`^${first.revision}\t`, "m"));

      await server.close();
      await expect.poll(() => stderr, { timeout: 15_000 }).toMatch(/reconnecting, resuming after revision/);
      expect(child.exitCode).toBe(null);

      // The same database, with the same admin key so the watcher's credentials still hold.
      server = await startHarness({ databaseUrl, config: { httpPort, adminKey: adminEnv.AGENTID_API_KEY } });
      const second = await server.as(adminEnv.AGENTID_API_KEY).grpc.tokens.revoke({ target: { case: "tokenId", value: b.tokenId }, reason: "two" });
      // At a line's start: the first line may hold "2<tab>" too (a time or an id ending in 2).
      await expect.poll(() => stdout, { timeout: 20_000 }).toMatch(new RegExp(`^${second.revision}\t`, "m"));
      const lines = stdout.trim().split("\n");
      expect(lines.map((l) => l.split("\t")[0])).toEqual([String(first.revision), String(second.revision)]);
    } finally {
      child.kill("SIGINT");
      expect(await exited).toBe(0);
      await server.close();
    }
  });

  it("fails with a message and status 2 when its credentials are refused", async () => {
    const r = await cli(["watch"], { ...env, AGENTID_API_KEY: "ak_not_a_key" });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unauthenticated/);
  });
});

describe("the checkout", () => {
  it("keeps private keys (*.pem) out of git", () => {
    for (const path of ["agent.pem", "keys/agent.pem"]) expect(spawnSync("git", ["check-ignore", "-q", path], { cwd: ROOT }).status, path).toBe(0);
    expect(spawnSync("git", ["check-ignore", "-q", "src/cli/main.ts"], { cwd: ROOT }).status).toBe(1);
  });
});
