import { spawn, type ChildProcess } from "node:child_process";
import { createHash, createPublicKey, generateKeyPairSync, verify } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import pg from "pg";
import { createClient, type Client } from "@connectrpc/connect";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { verifyLog } from "../src/audit/verify.js";
import { Witness } from "../src/audit/witness.js";
import { publicKey, startHarness, type Harness } from "./support/harness.js";
import { dataDirFor, freePort } from "../bench/lib/cluster.js";
import { bin, runCli } from "./support/process.js";

// Witnesses (C2SP tlog-witness, tlog-cosignature) against insiders who hold the database and the
// signing key: a rewrite after the witness saw the log, and a split view.

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "agentid-witness-"));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function server(opts: { databaseUrl?: string; signingKey?: string } = {}): Promise<{ h: Harness; audit: Client<typeof AuditService>; url: string }> {
  const h = await startHarness({ databaseUrl: opts.databaseUrl, config: opts.signingKey ? { auditSigningKey: opts.signingKey } : {} });
  let closed = false;
  cleanup.push(async () => {
    if (!closed) await h.close();
  });
  const close = h.close;
  h.close = async () => {
    closed = true;
    await close();
  };
  return { h, audit: createClient(AuditService, h.grpcTransport), url: `http://127.0.0.1:${h.server.httpPort}` };
}

async function fill(h: Harness, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const { agent } = await h.grpc.agents.registerAgent({ name: `a${i}`, publicKey: publicKey() });
    await h.grpc.tokens.issue({ agentId: agent!.agentId });
  }
}

/** The insider: rewrites entry `seq` everywhere the database keeps it, and deletes the checkpoints. */
async function rewrite(databaseUrl: string, seq: number): Promise<void> {
  const sql = new pg.Client({ connectionString: databaseUrl });
  await sql.connect();
  try {
    await sql.query(`update audit_entries set reason = 'routine decommission', actor = 'key:someone' where seq = $1`, [seq]);
    const { rows } = await sql.query("select * from audit_entries where seq = $1", [seq]);
    const r = rows[0];
    const doc = `{"actor":${JSON.stringify(r.actor)},"agent_id":${JSON.stringify(r.agent_id ?? "")},"details":${canonical(r.details)},"kind":${JSON.stringify(r.kind)},"reason":${JSON.stringify(r.reason)},${r.salt ? `"salt":${JSON.stringify(r.salt)},` : ""}"seq":${seq},"time":"${(r.at as Date).toISOString()}","token_id":${JSON.stringify(r.token_id ?? "")}}`;
    const leaf = createHash("sha256").update(Buffer.from([0])).update(doc).digest();
    await sql.query("update audit_entries set leaf_hash = $1 where seq = $2", [leaf, seq]);
    await sql.query("update audit_tree set hash = $1 where height = 0 and idx = $2", [leaf, seq]);
    await sql.query("delete from audit_checkpoints");
  } finally {
    await sql.end();
  }
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/** `agentid audit witness` as its own process, serving on a free port. */
async function witnessProcess(url: string, apiKey: string, state: string): Promise<{ url: string; proc: ChildProcess; output: () => string }> {
  const port = await freePort();
  const proc = spawn(process.execPath, [bin, "audit", "witness", "--url", url, "--api-key", apiKey, "--state", state, "--listen", `127.0.0.1:${port}`, "--interval", "100ms"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  proc.stdout!.on("data", (d) => (output += d));
  proc.stderr!.on("data", (d) => (output += d));
  cleanup.push(async () => {
    if (proc.exitCode === null) {
      proc.kill();
      await new Promise((r) => proc.once("exit", r));
    }
  });
  return { url: `http://127.0.0.1:${port}`, proc, output: () => output };
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("audit witness", () => {
  it("catches a rewrite by an insider holding the database and the key, after the checkpoints were deleted", async () => {
    const a = await server();
    await fill(a.h, 6);
    const size = (await a.audit.getCheckpoint({})).checkpoint!.treeSize;
    const state = await tempDir();
    const w = await witnessProcess(a.url, a.h.adminKey, state);
    const cosigned = await waitFor("the witness's cosignature", async () => {
      const res = await fetch(`${w.url}/checkpoint`);
      const text = await res.text();
      return res.status === 200 && BigInt(text.split("\n")[1]!) >= size ? text : undefined;
    });
    expect(cosigned).toMatch(/\n— agentid-witness /);
    const ok = await runCli(["audit", "verify", "--url", a.url, "--api-key", a.h.adminKey, "--witness", w.url]);
    expect(ok.stdout, ok.stderr).toContain("extends checkpoints cosigned by 1 witness");
    expect(ok.code).toBe(0);

    // The insider rewrites entry 5 in the entries, their leaf hashes and the stored tree, deletes
    // every checkpoint and what the server recorded, and restarts it: holding the key, the server
    // (or the insider with the stolen key) signs the rewritten log, which now verifies on its own.
    const databaseUrl = a.h.databaseUrl;
    await a.h.close();
    await rewrite(databaseUrl, 5);
    await rm(join(dataDirFor(databaseUrl), "audit-checkpoint"), { force: true });
    const b = await server({ databaseUrl });
    const alone = await runCli(["audit", "verify", "--url", b.url, "--api-key", b.h.adminKey]);
    expect(alone.stdout).toContain("OK:");

    // A witness run as its own process, from its stored state, refuses the new history.
    const once = await runCli(["audit", "witness", "--once", "--url", b.url, "--api-key", b.h.adminKey, "--state", state]);
    expect(once.code).toBe(1);
    expect(once.stderr).toMatch(/ALARM: fork: the log's tree of \d+ entries does not extend the tree of \d+ this witness cosigned/);
    expect((await readdir(state)).some((f) => f.startsWith("alarm-"))).toBe(true);

    // And a verifier that requires the witness sees the rewrite, and which entry it was.
    const bad = await runCli(["audit", "verify", "--url", b.url, "--api-key", b.h.adminKey, "--witness", w.url]);
    expect(bad.code, bad.stdout).toBe(1);
    expect(bad.stdout, bad.stdout).toContain("no longer hash to the root of the checkpoint witness");
    // Every stored hash and checkpoint was rewritten, so only the range can be named.
    expect(bad.stdout, bad.stdout).toMatch(/^entry 0: or a later entry up to 12 was rewritten/m);
    expect(bad.stdout).toContain("0 of the 1 witnesses required");
  }, 120_000);

  it("detects a split view: two trees signed with one key, served to two clients", async () => {
    const pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const one = await server({ signingKey: pem });
    const two = await server({ signingKey: pem });
    await fill(one.h, 3);
    await fill(two.h, 4);
    // Same key, so each view verifies alone.
    expect((await verifyLog(one.audit)).ok).toBe(true);
    expect((await verifyLog(two.audit)).ok).toBe(true);

    const witness = Witness.open({ stateDir: await tempDir(), name: "witness.example/w1" });
    const follow = (c: Client<typeof AuditService>) =>
      witness.follow({
        checkpoint: async () => (await c.getCheckpoint({})).checkpoint!.note,
        consistencyProof: async (first, second) => (await c.getConsistencyProof({ firstTreeSize: first, secondTreeSize: second })).hashes,
        verifierKey: async () => (await c.getPublicKey({})).verifierKey,
      });
    expect(await follow(one.audit)).toBe("accepted");
    // The second view, shown to the same witness, is refused.
    expect(await follow(two.audit)).toBe("alarm");
    expect(witness.alarms[0]).toMatch(/ALARM: fork/);

    // A client of the second view that requires this witness fails.
    const witnessed = [{ source: "w1", note: witness.latest! }];
    const r = await verifyLog(two.audit, { witnessed, witnessKeys: [witness.cosigner.verifierKey], minWitnesses: 1 });
    expect(r.ok).toBe(false);
    expect(r.problems.map((p) => p.message).join("\n")).toMatch(/0 of the 1 witnesses required/);
    const good = await verifyLog(one.audit, { witnessed, witnessKeys: [witness.cosigner.verifierKey], minWitnesses: 1 });
    expect(good.problems).toEqual([]);
    expect(good.witnesses).toEqual([witness.cosigner.verifierKey]);
    // A cosignature by a key the client does not trust does not count.
    const other = Witness.open({ stateDir: await tempDir(), name: "witness.example/w2" });
    const untrusted = await verifyLog(one.audit, { witnessed, witnessKeys: [other.cosigner.verifierKey], minWitnesses: 1 });
    expect(untrusted.ok).toBe(false);
  });

  it("stores only what it verified: a resubmission with a bogus signature line by the log's name changes nothing", async () => {
    const a = await server();
    await fill(a.h, 1);
    const state = await tempDir();
    const witness = Witness.open({ stateDir: state, name: "witness.example/w1" });
    witness.pinLogKey((await a.audit.getPublicKey({})).verifierKey);
    const { server: http, url } = await witness.listen("127.0.0.1", 0);
    cleanup.push(() => new Promise((r) => http.close(r)));
    const cp = (await a.audit.getCheckpoint({})).checkpoint!;
    expect((await fetch(`${url}/add-checkpoint`, { method: "POST", body: `old 0\n\n${cp.note}` })).status).toBe(200);
    const before = await (await fetch(`${url}/checkpoint`)).text();

    // No credentials: the witness's own checkpoint, with a bogus line by the log's name first.
    const split = before.indexOf("\n\n") + 2;
    const logName = before.split("\n", 1)[0]!;
    const bogus = `\u2014 ${logName} ${Buffer.alloc(68).toString("base64")}\n`;
    const poisoned = `${before.slice(0, split)}${bogus}${before.slice(split)}`;
    await fetch(`${url}/add-checkpoint`, { method: "POST", body: `old ${cp.treeSize}\n\n${poisoned}` });

    const after = await (await fetch(`${url}/checkpoint`)).text();
    expect(after).not.toContain(bogus);
    expect(after.slice(0, split)).toBe(before.slice(0, split));
    // The stored note still carries the log's real signature, and the witness restarts.
    const reopened = Witness.open({ stateDir: state, name: "witness.example/w1" });
    expect(reopened.latestSize).toBe(cp.treeSize);
    expect(reopened.latest).not.toContain(bogus);
  });

  it("speaks tlog-witness add-checkpoint, and its cosignatures follow tlog-cosignature", async () => {
    const a = await server();
    await fill(a.h, 2);
    const witness = Witness.open({ stateDir: await tempDir(), name: "witness.example/w1" });
    const { server: http, url } = await witness.listen("127.0.0.1", 0);
    cleanup.push(() => new Promise((r) => http.close(r)));
    const post = async (body: string) => {
      const res = await fetch(`${url}/add-checkpoint`, { method: "POST", body });
      return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
    };
    const first = (await a.audit.getCheckpoint({})).checkpoint!;
    expect((await post(`old 0\n\n${first.note}`)).status).toBe(404); // no log followed yet
    const key = await a.audit.getPublicKey({});
    witness.pinLogKey(key.verifierKey);
    expect((await post(`garbage`)).status).toBe(400);
    const accepted = await post(`old 0\n\n${first.note}`);
    expect(accepted.status, accepted.text).toBe(200);

    // The cosignature, checked from the spec: key id SHA-256(name || "\n" || 0x04 || key)[:4],
    // then a big-endian u64 timestamp and an Ed25519 signature over
    // "cosignature/v1\ntime <t>\n" || checkpoint body.
    const line = accepted.text.trim();
    expect(line.startsWith("\u2014 witness.example/w1 ")).toBe(true);
    const raw = Buffer.from(line.split(" ")[2]!, "base64");
    const wkey = witness.cosigner.publicKey;
    const id = createHash("sha256").update("witness.example/w1\n").update(Buffer.from([4])).update(wkey).digest().subarray(0, 4);
    expect(raw.subarray(0, 4)).toEqual(id);
    const t = raw.readBigUInt64BE(4);
    expect(Number(t)).toBeGreaterThan(Date.now() / 1000 - 60);
    const body = first.note.slice(0, first.note.indexOf("\n\n") + 1);
    const spki = createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), wkey]), format: "der", type: "spki" });
    expect(verify(null, Buffer.from(`cosignature/v1\ntime ${t}\n${body}`), spki, raw.subarray(12))).toBe(true);

    // A stale old size: 409 with the witness's size.
    await fill(a.h, 1);
    const next = (await a.audit.getCheckpoint({})).checkpoint!;
    const stale = await post(`old 0\n\n${next.note}`);
    expect(stale.status).toBe(409);
    expect(stale.type).toBe("text/x.tlog.size");
    expect(stale.text).toBe(`${first.treeSize}\n`);
    // A proof that does not verify: 422, and no cosignature.
    const forged = Buffer.alloc(32, 7).toString("base64");
    expect((await post(`old ${first.treeSize}\n${forged}\n\n${next.note}`)).status).toBe(422);
    // Signed by another key: 403.
    const other = await server();
    const foreign = (await other.audit.getCheckpoint({})).checkpoint!.note;
    const refused = await post(`old ${first.treeSize}\n\n${foreign}`);
    expect(refused.status, refused.text).toBe(403);
    // The real proof: accepted.
    const proof = (await a.audit.getConsistencyProof({ firstTreeSize: first.treeSize, secondTreeSize: next.treeSize })).hashes;
    const ok = await post(`old ${first.treeSize}\n${proof.map((p) => Buffer.from(p).toString("base64") + "\n").join("")}\n${next.note}`);
    expect(ok.status, ok.text).toBe(200);
    expect(await (await fetch(`${url}/checkpoint`)).text()).toContain(`\n${next.treeSize}\n`);
    expect(await (await fetch(`${url}/metrics`)).text()).toContain("agentid_witness_alarms_total 1");
  });
});
