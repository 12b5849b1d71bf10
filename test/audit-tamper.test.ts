import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import pg from "pg";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { verifyLog, type VerifyReport } from "../src/audit/verify.js";
import { publicKey, startHarness, type Harness } from "./support/harness.js";
import { dataDirFor } from "../bench/lib/cluster.js";

// Tampering happens directly in PostgreSQL, as an insider with database access would do it.

const run = promisify(execFile);

interface Setup {
  h: Harness;
  audit: Client<typeof AuditService>;
  sql: pg.Client;
  /** A checkpoint the investigator saved before the tampering. */
  saved: string;
  agentId: string;
  token: string;
}

const open: Setup[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) {
    await s.sql.end();
    await s.h.close();
  }
});

async function setup(opts: { databaseUrl?: string; checkpointEach?: boolean } = {}): Promise<Setup> {
  // No background signing: which checkpoints exist must not depend on timing.
  const h = await startHarness({ ...opts, config: { auditCheckpointIntervalMs: 3_600_000 } });
  const audit = createClient(AuditService, h.grpcTransport);
  const sql = new pg.Client({ connectionString: h.databaseUrl });
  await sql.connect();
  const s: Setup = { h, audit, sql, saved: "", agentId: "", token: "" };
  open.push(s);
  if (opts.databaseUrl) return s;
  // As on a busy server, where a checkpoint is signed every second.
  const cp = async () => {
    if (opts.checkpointEach) await audit.getCheckpoint({});
  };
  // 13 entries: the bootstrap admin key (seq 0), 3 registrations, 6 issuances, a token revocation, an agent revocation, 1 more issue.
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    ids.push((await h.grpc.agents.registerAgent({ name: `agent-${i}`, publicKey: publicKey(), allowedScopes: ["s"] })).agent!.agentId);
    await cp();
  }
  const tokens: string[] = [];
  for (let i = 0; i < 6; i++) {
    tokens.push((await h.grpc.tokens.issue({ agentId: ids[i % 3]!, scopes: ["s"] })).token);
    await cp();
  }
  await h.grpc.tokens.revoke({ target: { case: "token", value: tokens[0]! }, reason: "leaked" });
  await cp();
  await h.grpc.tokens.revoke({ target: { case: "agentId", value: ids[1]! }, reason: "kill switch" });
  await cp();
  await h.grpc.tokens.issue({ agentId: ids[2]! });
  s.saved = (await audit.getCheckpoint({})).checkpoint!.note;
  s.agentId = ids[1]!;
  s.token = tokens[0]!;
  return s;
}

async function verify(s: Setup): Promise<VerifyReport> {
  return verifyLog(s.audit, { savedCheckpoint: s.saved, pageSize: 5 });
}

/** The seqs the verifier named, in order. */
const named = (r: VerifyReport) => [...new Set(r.problems.filter((p) => p.seq !== undefined).map((p) => Number(p.seq)))];

/** What an attacker who knows the documented encoding would store as the leaf hash. */
function forgeLeafHash(row: Record<string, unknown>): Buffer {
  const canonical = (v: unknown): string =>
    Array.isArray(v)
      ? `[${v.map(canonical).join(",")}]`
      : v !== null && typeof v === "object"
        ? `{${Object.keys(v)
            .sort()
            .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
            .join(",")}}`
        : JSON.stringify(v);
  const doc = {
    seq: Number(row.seq),
    time: (row.at as Date).toISOString(),
    kind: row.kind,
    agent_id: row.agent_id ?? "",
    token_id: row.token_id ?? "",
    actor: row.actor,
    reason: row.reason,
    details: row.details,
    ...(row.salt ? { salt: row.salt } : {}),
  };
  return createHash("sha256").update(Buffer.from([0])).update(canonical(doc)).digest();
}

async function rehash(sql: pg.Client, seq: number): Promise<void> {
  const { rows } = await sql.query("select * from audit_entries where seq = $1", [seq]);
  await sql.query("update audit_entries set leaf_hash = $1 where seq = $2", [forgeLeafHash(rows[0]), seq]);
}

function cli(s: Setup, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run("node", ["bin/agentid.js", ...args, "--url", `http://127.0.0.1:${s.h.server.httpPort}`, "--api-key", s.h.adminKey]).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

describe("audit verify", () => {
  it("refuses a key that cannot read every entry, instead of reporting what it cannot see as deleted", async () => {
    const s = await setup();
    const { KeyService, Role } = await import("../gen/agentid/v1/key_pb.js");
    const keys = createClient(KeyService, s.h.grpcTransport);
    for (const role of [Role.ISSUER, Role.RESOURCE_SERVER]) {
      const { secret } = await keys.createApiKey({ name: "narrow", role, audiences: role === Role.RESOURCE_SERVER ? ["api"] : [] });
      const r = await run("node", ["bin/agentid.js", "audit", "verify", "--url", `http://127.0.0.1:${s.h.server.httpPort}`, "--api-key", secret]).then(
        () => ({ code: 0, stdout: "", stderr: "" }),
        (err: { code: number; stdout: string; stderr: string }) => err,
      );
      expect(r.code).toBe(2);
      expect(r.stdout).not.toContain("FAILED");
      const name = Role[role].toLowerCase();
      expect(r.stderr).toContain(`audit verify needs an admin key: ${name === "issuer" ? "an" : "a"} ${name} key may read only some of the log's entries`);
    }
    expect((await cli(s, "audit", "verify")).stdout).toMatch(/^OK: /);
  });

  it("passes on an honest log, and a saved checkpoint stays a prefix as the log grows", async () => {
    const s = await setup();
    const { agent } = await s.h.grpc.agents.registerAgent({ name: "later", publicKey: publicKey() });
    await s.h.grpc.tokens.issue({ agentId: agent!.agentId });
    const r = await verify(s);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.entries).toBe(15);
    expect(r.savedSize).toBe(13n);
  });

  it("names an entry whose contents were changed", async () => {
    const s = await setup();
    await s.sql.query("update audit_entries set reason = 'routine rotation' where seq = 10");
    const r = await verify(s);
    expect(r.ok).toBe(false);
    expect(named(r)).toEqual([10]);
    expect(r.problems[0]!.message).toContain("does not match the leaf hash");
  });

  it("names an entry whose contents and stored leaf hash were both rewritten", async () => {
    const s = await setup();
    await s.sql.query(`update audit_entries set actor = 'policy:nightly' where seq = 4`);
    await rehash(s.sql, 4);
    const r = await verify(s);
    expect(r.ok).toBe(false);
    expect(named(r)).toEqual([4]);
  });

  it("names a deleted entry", async () => {
    const s = await setup();
    await s.sql.query("delete from audit_entries where seq = 7");
    const r = await verify(s);
    expect(r.ok).toBe(false);
    expect(named(r)).toEqual([7]);
    expect(r.problems[0]!.message).toContain("missing");
  });

  it("names a deleted last entry", async () => {
    const s = await setup();
    await s.sql.query("delete from audit_entries where seq = 11");
    const r = await verify(s);
    expect(r.ok).toBe(false);
    expect(named(r)).toEqual([11]);
  });

  it("names both entries of a reordering", async () => {
    const s = await setup();
    await s.sql.query("begin");
    await s.sql.query("update audit_entries set seq = -1 where seq = 3");
    await s.sql.query("update audit_entries set seq = 3 where seq = 8");
    await s.sql.query("update audit_entries set seq = 8 where seq = -1");
    await s.sql.query("commit");
    // Even with leaf hashes recomputed for the new positions.
    await rehash(s.sql, 3);
    await rehash(s.sql, 8);
    const r = await verify(s);
    expect(r.ok).toBe(false);
    expect(named(r)).toEqual([3, 8]);
  });

  it("names an inserted entry", async () => {
    const s = await setup();
    await s.sql.query("begin");
    await s.sql.query("update audit_entries set seq = seq + 1000000 where seq >= 5");
    await s.sql.query("update audit_entries set seq = seq - 999999 where seq >= 1000000");
    const forged = {
      seq: 5,
      at: new Date(),
      kind: "agent.registered",
      agent_id: "agt_0000000000000000000000",
      token_id: null,
      actor: "anonymous",
      reason: "",
      details: { name: "alibi", labels: {}, public_key: "" },
    };
    await s.sql.query(
      `insert into audit_entries (seq, at, kind, agent_id, token_id, actor, reason, details, leaf_hash)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [5, forged.at, forged.kind, forged.agent_id, null, forged.actor, "", JSON.stringify(forged.details), forgeLeafHash(forged)],
    );
    await s.sql.query("update audit_head set size = size + 1");
    await s.sql.query("commit");
    const r = await verify(s);
    expect(r.ok).toBe(false);
    // The forged entry first; every entry it pushed along no longer sits where it was committed.
    expect(named(r)[0]).toBe(5);
    // (The shifted last entry, seq 13, reached the server's tree as a new leaf: named too.)
    expect(named(r)).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13]);
  });

  /** Stops the server and starts another on the same database (and data folder). */
  async function restart(s: Setup, opts: { forgetRecord?: boolean } = {}): Promise<Setup> {
    const url = s.h.databaseUrl;
    await s.sql.end();
    await s.h.close();
    open.splice(open.indexOf(s), 1);
    if (opts.forgetRecord) await rm(join(dataDirFor(url), "audit-checkpoint"), { force: true });
    const s2 = await setup({ databaseUrl: url });
    s2.saved = s.saved;
    return s2;
  }

  it("the insider rewrite of the issue (entry and leaf hash rewritten, checkpoints deleted, restart) is named exactly", async () => {
    const s = await setup({ checkpointEach: true });
    await s.sql.query(`update audit_entries set actor = 'key:someone', reason = 'routine decommission' where seq = 10`);
    await rehash(s.sql, 10);
    await s.sql.query("delete from audit_checkpoints");
    const s2 = await restart(s);
    // The server's tree kept the hash it committed to, so the rewritten entry stands out, with or
    // without a checkpoint saved before.
    for (const r of [await verifyLog(s2.audit, { pageSize: 5 }), await verify(s2)]) {
      expect(r.ok).toBe(false);
      expect(named(r)[0]).toBe(10);
      expect(r.problems[0]!.message).toContain("does not match the leaf hash");
      expect(r.problems.map((p) => p.message).join("\n")).not.toContain("or a later entry");
    }
    expect(named(await verify(s2))).toEqual([10]);
  });

  it("refuses, loudly, to sign a tree whose stored hashes were rewritten too, and never re-signs it", async () => {
    const s = await setup({ checkpointEach: true });
    await s.sql.query(`update audit_entries set reason = 'routine decommission' where seq = 10`);
    await rehash(s.sql, 10);
    await s.sql.query("update audit_tree set hash = (select leaf_hash from audit_entries where seq = 10) where height = 0 and idx = 10");
    await s.sql.query("delete from audit_checkpoints");
    const s2 = await restart(s);
    expect(s2.h.logs.join("")).toContain("REFUSING TO SIGN the audit log");
    const err = await s2.audit.getCheckpoint({}).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.FailedPrecondition);
    expect((err as ConnectError).rawMessage).toMatch(/does not extend the checkpoint of 13 entries this server signed/);
    // New entries do not change that: history below 13 stays rewritten.
    await s2.h.grpc.agents.registerAgent({ name: "after", publicKey: publicKey() });
    await expect(s2.audit.getCheckpoint({})).rejects.toThrow(/refuses to sign/);
    const { rows } = await s2.sql.query("select count(*)::int as n from audit_checkpoints");
    expect(rows[0].n).toBe(0);
    const r = await verify(s2);
    expect(r.ok).toBe(false);
    expect(r.problems.map((p) => p.message).join("\n")).toMatch(/refuses to sign/);
  });

  it("names the rewritten range from older checkpoints when the stored hashes were rewritten too", async () => {
    const s = await setup({ checkpointEach: true });
    await s.sql.query(`update audit_entries set reason = 'routine decommission' where seq = 11`);
    await rehash(s.sql, 11);
    await s.sql.query("update audit_tree set hash = (select leaf_hash from audit_entries where seq = 11) where height = 0 and idx = 11");
    // With the key, its record and every checkpoint from 11 on gone, the server signs the rewrite.
    await s.sql.query("delete from audit_checkpoints where tree_size > 11");
    const s2 = await restart(s, { forgetRecord: true });
    // (14 entries: the restart created an admin key.)
    expect((await s2.audit.getCheckpoint({})).checkpoint!.treeSize).toBe(14n);
    const r = await verify(s2);
    expect(r.ok).toBe(false);
    const text = r.problems.map((p) => (p.seq === undefined ? p.message : `entry ${p.seq}: ${p.message}`)).join("\n");
    expect(text).toMatch(/entry 11: or a later entry up to 12 was rewritten/);
    expect(text).toMatch(/not consistent with the saved checkpoint/);
    expect(text).not.toMatch(/entry 13: or a later entry up to 12/);
  });

  it("runs from the CLI: saves a checkpoint, passes, then fails naming the changed entry", async () => {
    const s = await setup();
    const dir = await mkdtemp(join(tmpdir(), "agentid-audit-"));
    try {
      const file = join(dir, "checkpoint.txt");
      const ok = await cli(s, "audit", "verify", "--save-checkpoint", file);
      expect(ok.stdout).toContain("OK: 13 entries verify");
      expect(ok.code, ok.stderr).toBe(0);
      expect(await readFile(file, "utf8")).toMatch(/^agentid\/audit\n13\n/);

      const cp = await cli(s, "audit", "checkpoint");
      expect(cp.code, cp.stderr).toBe(0);
      expect(cp.stderr).toContain("signed by");
      expect(cp.stdout).toMatch(/^agentid\/audit\n13\n/);

      await s.h.grpc.tokens.issue({ agentId: (await s.h.grpc.agents.registerAgent({ name: "x", publicKey: publicKey() })).agent!.agentId });
      await s.sql.query("update audit_entries set kind = 'token.issued' where seq = 10");
      const bad = await cli(s, "audit", "verify", "--checkpoint", file);
      expect(bad.code).toBe(1);
      expect(bad.stdout).toContain("FAILED");
      expect(bad.stdout).toMatch(/^entry 10: /m);
      const viaTiles = await cli(s, "audit", "verify", "--tiles", "--checkpoint", file);
      expect(viaTiles.code).toBe(1);
      expect(viaTiles.stdout).toMatch(/^entry 10: /m);

      // A saved checkpoint altered by hand is refused.
      await writeFile(file, (await readFile(file, "utf8")).replace("\n13\n", "\n12\n"));
      const forged = await cli(s, "audit", "verify", "--checkpoint", file);
      expect(forged.code).toBe(1);
      expect(forged.stdout).toContain("saved checkpoint");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it("prints an agent's history as a timeline, without the token", async () => {
    const s = await setup();
    const out = await cli(s, "audit", "log", "--agent", s.agentId, "--since", "1h");
    expect(out.code).toBe(0);
    const lines = out.stdout.trim().split("\n");
    expect(lines.map((l) => l.split(/\s+/)[2])).toEqual(["agent.registered", "token.issued", "token.issued", "agent.revoked"]);
    expect(lines[3]).toContain('reason "kill switch"');
    expect(lines[3]).toContain("by key:key_");
    const none = await cli(s, "audit", "log", "--agent", s.agentId, "--until", "2020-01-01");
    expect(none.stdout).toBe("");
    const all = await cli(s, "audit", "log", "--json");
    expect(all.stdout.trim().split("\n")).toHaveLength(13);
    expect(all.stdout).not.toContain(s.token);
  }, 90_000);
});
