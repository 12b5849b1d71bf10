import { createHash, createPublicKey, generateKeyPairSync, verify } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AuditService, type AuditEntry } from "../gen/agentid/v1/audit_pb.js";
import { publicKey, startHarness, type Harness } from "./support/harness.js";
import { appendAuditEntry } from "../src/audit/append.js";
import { revoke } from "../src/domain/revocation.js";

// ---------------------------------------------------------------------------------------------
// An independent implementation of what the server must do, written plainly from the specs
// (RFC 6962 §2.1, RFC 9162 §2.1.3.2 and §2.1.4.2, C2SP signed-note, docs/transparency-log.md).
// It shares no code with src/audit.
// ---------------------------------------------------------------------------------------------

const sha256 = (...parts: Uint8Array[]) => createHash("sha256").update(Buffer.concat(parts)).digest();
const hashLeaf = (entry: Uint8Array) => sha256(Buffer.from([0x00]), entry);
const hashChildren = (l: Uint8Array, r: Uint8Array) => sha256(Buffer.from([0x01]), l, r);

/** k: the largest power of two smaller than n. */
function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k << 1 < n) k <<= 1;
  return k;
}

/** MTH(D[n]) over leaf hashes, straight from the RFC's recursive definition. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0]!;
  const k = largestPowerOfTwoBelow(leaves.length);
  return hashChildren(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** PATH(m, D[n]), RFC 6962 §2.1.1. */
function path(m: number, leaves: Buffer[]): Buffer[] {
  if (leaves.length <= 1) return [];
  const k = largestPowerOfTwoBelow(leaves.length);
  return m < k
    ? [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))]
    : [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}

/** SUBPROOF(m, D[n], b), RFC 6962 §2.1.2. */
function subproof(m: number, leaves: Buffer[], b: boolean): Buffer[] {
  const n = leaves.length;
  if (m === n) return b ? [] : [mth(leaves)];
  const k = largestPowerOfTwoBelow(n);
  return m <= k
    ? [...subproof(m, leaves.slice(0, k), b), mth(leaves.slice(k))]
    : [...subproof(m - k, leaves.slice(k), false), mth(leaves.slice(0, k))];
}

/** RFC 9162 §2.1.3.2: does the inclusion proof lead from the leaf to the root? */
function verifyInclusion(index: number, size: number, leaf: Buffer, proof: Uint8Array[], root: Buffer): boolean {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2: does the consistency proof link the two roots? */
function verifyConsistencyProof(first: number, second: number, firstRoot: Buffer, secondRoot: Buffer, proof: Uint8Array[]): boolean {
  if (first === second) return proof.length === 0 && firstRoot.equals(secondRoot);
  let nodes: Buffer[] = proof.map((p) => Buffer.from(p));
  if ((first & (first - 1)) === 0) nodes = [firstRoot, ...nodes];
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = nodes[0]!;
  let sr: Buffer = nodes[0]!;
  for (const c of nodes.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(firstRoot) && sr.equals(secondRoot);
}

/** Canonical JSON as docs/transparency-log.md specifies: sorted keys, no whitespace, integers. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical((v as Record<string, unknown>)[k])).join(",") + "}";
  }
  return JSON.stringify(v);
}

/** The entry bytes of an AuditEntry message, per the documented encoding. */
function entryBytes(e: AuditEntry): Buffer {
  const doc = {
    seq: Number(e.seq),
    time: timestampDate(e.time!).toISOString(),
    kind: e.kind,
    agent_id: e.agentId,
    token_id: e.tokenId,
    actor: e.actor,
    reason: e.reason,
    details: JSON.parse(e.detailsJson),
    // Entries from before salts have no salt key.
    ...(e.salt ? { salt: e.salt } : {}),
  };
  return Buffer.from(canonical(doc), "utf8");
}

/** Parses and checks a signed checkpoint note; returns size and root. */
function openNote(note: string, keyName: string, rawKey: Uint8Array): { size: number; root: Buffer; origin: string } {
  const [body, sigs] = note.split("\n\n") as [string, string];
  const [origin, size, root] = body.split("\n") as [string, string, string];
  const sigLine = sigs.trimEnd().split("\n").find((l) => l.startsWith(`\u2014 ${keyName} `));
  if (!sigLine) throw new Error("no signature line for the key");
  const blob = Buffer.from(sigLine.split(" ")[2]!, "base64");
  const keyHash = sha256(Buffer.from(`${keyName}\n`), Buffer.from([0x01]), rawKey).subarray(0, 4);
  if (!blob.subarray(0, 4).equals(keyHash)) throw new Error("key id mismatch");
  const spki = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), rawKey]);
  const key = createPublicKey({ key: spki, format: "der", type: "spki" });
  if (!verify(null, Buffer.from(body + "\n"), key, blob.subarray(4))) throw new Error("bad signature");
  return { origin, size: Number(size), root: Buffer.from(root, "base64") };
}

// ---------------------------------------------------------------------------------------------

let h: Harness;
let audit: Client<typeof AuditService>;
let sqlClient: pg.Client;

beforeAll(async () => {
  h = await startHarness();
  audit = createClient(AuditService, h.grpcTransport);
  sqlClient = new pg.Client({ connectionString: h.databaseUrl });
  await sqlClient.connect();
});
afterAll(async () => {
  await sqlClient?.end();
  await h?.close();
});

async function allEntries(c = audit): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  let pageToken = "";
  do {
    const page = await c.listEntries({ pageSize: 7, pageToken });
    out.push(...page.entries);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

/** An agent's first entry: RegisterAgent returns at its commit, and a sequencer numbers the entry just after. */
async function firstEntryOf(agentId: string): Promise<AuditEntry> {
  for (let i = 0; i < 200; i++) {
    const [entry] = (await audit.listEntries({ agentId })).entries;
    if (entry) return entry;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no entry for ${agentId} was numbered`);
}

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("transparency log entries", () => {
  it("records every change with actor, reason and token id, in the same transaction, and never the token", async () => {
    const c = h.grpc;
    const { agent } = await c.agents.registerAgent({ name: "audited", publicKey: publicKey(), labels: { team: "ops" }, allowedScopes: ["orders:read"], allowedAudiences: ["api"] });
    const id = agent!.agentId;
    const t1 = await c.tokens.issue({ agentId: id, scopes: ["orders:read"], audiences: ["api"] });
    const t2 = await c.tokens.issue({ agentId: id });
    await c.tokens.revoke({ target: { case: "token", value: t1.token }, reason: "leaked in a log" });
    // A repeated revoke changes nothing, so it writes nothing.
    await c.tokens.revoke({ target: { case: "tokenId", value: t1.tokenId }, reason: "again" });
    await c.tokens.revoke({ target: { case: "agentId", value: id }, reason: "kill switch: prompt injection" });
    // Issuance for a revoked agent fails and rolls back: no entry, and no seq is used up.
    expect(await codeOf(c.tokens.issue({ agentId: id }))).toBe(Code.FailedPrecondition);

    const { entries } = await audit.listEntries({ agentId: id });
    expect(entries.map((e) => e.kind)).toEqual(["agent.registered", "token.issued", "token.issued", "token.revoked", "agent.revoked"]);
    expect(entries.every((e) => /^key:key_\w{22}$/.test(e.actor) && e.agentId === id)).toBe(true);
    expect(entries.map((e) => e.tokenId)).toEqual(["", t1.tokenId, t2.tokenId, t1.tokenId, ""]);
    expect(entries.map((e) => e.reason)).toEqual(["", "", "", "leaked in a log", "kill switch: prompt injection"]);
    expect(JSON.parse(entries[0]!.detailsJson)).toMatchObject({ name: "audited", labels: { team: "ops" } });
    expect(JSON.parse(entries[1]!.detailsJson)).toMatchObject({ scopes: ["orders:read"], audiences: ["api"] });
    expect(JSON.parse(entries[4]!.detailsJson)).toMatchObject({ tokens_revoked: 1 });
    for (let i = 1; i < entries.length; i++) expect(entries[i]!.seq).toBe(entries[i - 1]!.seq + 1n);

    // The token itself is nowhere in the log, its checkpoints, or the server's logs.
    await audit.getCheckpoint({});
    for (const table of ["audit_entries", "audit_checkpoints"]) {
      const { rows } = await sqlClient.query<{ t: string }>(`select string_agg(x::text, '') as t from ${table} x`);
      expect(rows[0]!.t).not.toContain(t1.token);
      expect(rows[0]!.t).not.toContain(t2.token);
    }
    expect(h.logs.join("")).not.toContain(t1.token);
  });

  it("keeps seq gap-free under concurrent writers", async () => {
    const before = (await audit.getCheckpoint({})).checkpoint!.treeSize;
    const agents = await Promise.all(
      Array.from({ length: 6 }, (_, i) => h.grpc.agents.registerAgent({ name: `busy-${i}`, publicKey: publicKey() })),
    );
    const ids = agents.map((a) => a.agent!.agentId);
    const issued = await Promise.all(Array.from({ length: 40 }, (_, i) => h.grpc.tokens.issue({ agentId: ids[i % 6]! })));
    const revoked = await Promise.all([
      ...issued.slice(0, 10).map((t) => h.grpc.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "r" })),
      h.grpc.tokens.revoke({ target: { case: "agentId", value: ids[5]! }, reason: "r" }),
    ]);
    const all = await allEntries();
    expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => BigInt(i)));
    // A token of the killed agent is revoked by exactly one of the two racing calls, whichever
    // went first; the other logs nothing.
    const tokenEvents = revoked.slice(0, 10).reduce((n, r) => n + r.tokensRevoked, 0n);
    expect(tokenEvents + revoked[10]!.tokensRevoked).toBe(10n + 5n);
    expect(BigInt(all.length) - before).toBe(6n + 40n + tokenEvents + 1n);
    const { rows } = await sqlClient.query<{ size: string }>("select size from audit_head");
    expect(BigInt(rows[0]!.size)).toBe(BigInt(all.length));
  });

  it("filters by agent, kind and time range, paged", async () => {
    const { agent } = await h.grpc.agents.registerAgent({ name: "filtered", publicKey: publicKey() });
    const id = agent!.agentId;
    for (let i = 0; i < 5; i++) await h.grpc.tokens.issue({ agentId: id });
    const mine = (await audit.listEntries({ agentId: id })).entries;
    expect(mine).toHaveLength(6);

    const seen: AuditEntry[] = [];
    let pageToken = "";
    do {
      const page = await audit.listEntries({ agentId: id, kind: "token.issued", pageSize: 2, pageToken });
      expect(page.entries.length).toBeLessThanOrEqual(2);
      seen.push(...page.entries);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen.map((e) => e.seq)).toEqual(mine.slice(1).map((e) => e.seq));

    // since is inclusive, until exclusive, on the entries' own times.
    const t = (e: AuditEntry) => timestampDate(e.time!);
    const from = t(mine[2]!);
    const until = new Date(t(mine[4]!).getTime() + 1);
    const ranged = (await audit.listEntries({ agentId: id, since: timestampFromDate(from), until: timestampFromDate(until) })).entries;
    expect(ranged.length).toBeGreaterThan(0);
    expect(ranged.every((e) => t(e) >= from && t(e) < until)).toBe(true);
    expect(ranged.map((e) => e.seq)).toEqual(mine.filter((e) => t(e) >= from && t(e) < until).map((e) => e.seq));
    // Entry times never go backwards along seq.
    const everything = await allEntries();
    for (let i = 1; i < everything.length; i++) expect(t(everything[i]!) >= t(everything[i - 1]!)).toBe(true);
  });

  it("records the actor the domain is given, and kinds added later through appendAuditEntry", async () => {
    const { agent } = await h.grpc.agents.registerAgent({ name: "policed", publicKey: publicKey() });
    const id = agent!.agentId;
    await revoke(h.ctx.db, h.ctx.sequencer, { agentId: id }, "risk score above 0.9", "policy:risk-threshold");
    await h.ctx.db.transaction().execute((tx) =>
      appendAuditEntry(tx, {
        kind: "policy.changed",
        agentId: id,
        actor: "key:ops-admin",
        reason: "tighten",
        details: { policy: "risk-threshold", threshold: 80, enabled: true, scopes: ["a", "b"], nested: { z: 1, a: "\u00e9\n\"" } },
      }),
    );
    // A failing transaction leaves no entry.
    await expect(
      h.ctx.db.transaction().execute(async (tx) => {
        await appendAuditEntry(tx, { kind: "activity.reported", agentId: id, actor: "x" });
        throw new Error("rolled back");
      }),
    ).rejects.toThrow("rolled back");
    const { entries } = await audit.listEntries({ agentId: id });
    expect(entries.map((e) => [e.kind, e.actor])).toEqual([
      ["agent.registered", expect.stringMatching(/^key:key_/)],
      ["agent.revoked", "policy:risk-threshold"],
      ["policy.changed", "key:ops-admin"],
    ]);
    expect(JSON.parse(entries[2]!.detailsJson)).toEqual({ policy: "risk-threshold", threshold: 80, enabled: true, scopes: ["a", "b"], nested: { z: 1, a: "\u00e9\n\"" } });
    // The committed leaf hash matches the documented encoding, recomputed here.
    for (const e of entries) expect(hashLeaf(entryBytes(e)).equals(Buffer.from(e.leafHash))).toBe(true);
    // Malformed kinds are a bug in the caller.
    await expect(h.ctx.db.transaction().execute((tx) => appendAuditEntry(tx, { kind: "Bad Kind", actor: "x" }))).rejects.toThrow(/kind/);
  });

  it("rejects bad queries, naming the field", async () => {
    const bad = async (p: Promise<unknown>, field: string) => {
      try {
        await p;
        throw new Error("expected an error");
      } catch (err) {
        const e = ConnectError.from(err);
        expect([Code.InvalidArgument, Code.OutOfRange]).toContain(e.code);
        expect(e.rawMessage).toContain(field);
      }
    };
    await bad(audit.listEntries({ agentId: "nope" }), "agent_id");
    await bad(audit.listEntries({ kind: "Not A Kind" }), "kind");
    await bad(audit.listEntries({ pageSize: 5000 }), "page_size");
    await bad(audit.listEntries({ pageToken: "!!" }), "page_token");
    const size = (await audit.getCheckpoint({})).checkpoint!.treeSize;
    await bad(audit.getInclusionProof({ leafIndex: size, treeSize: size }), "leaf_index");
    await bad(audit.getInclusionProof({ leafIndex: 0n, treeSize: size + 1000n }), "tree_size");
    await bad(audit.getConsistencyProof({ firstTreeSize: 0n, secondTreeSize: size }), "first_tree_size");
    await bad(audit.getConsistencyProof({ firstTreeSize: size, secondTreeSize: size + 1000n }), "second_tree_size");
    expect(await codeOf(audit.getInclusionProof({ leafIndex: size, treeSize: size + 1000n }))).toBe(Code.OutOfRange);
  });
});

describe("Merkle tree, checkpoints and proofs, checked by an independent implementation", () => {
  it("signs checkpoints in the signed-note format with the published key, over the RFC 6962 root of the entries", async () => {
    const key = await audit.getPublicKey({});
    expect(key.publicKey).toHaveLength(32);
    const keyId = sha256(Buffer.from(`${key.origin}\n`), Buffer.from([1]), key.publicKey).subarray(0, 4).toString("hex");
    expect(key.verifierKey).toBe(`${key.origin}+${keyId}+${Buffer.concat([Buffer.from([1]), key.publicKey]).toString("base64")}`);

    const { checkpoint } = await audit.getCheckpoint({});
    const note = checkpoint!.note;
    expect(note).toMatch(/^agentid\/audit\n\d+\n[A-Za-z0-9+/]{43}=\n\n\u2014 agentid\/audit [A-Za-z0-9+/=]{92}\n$/);
    const opened = openNote(note, key.origin, key.publicKey);
    expect(opened.origin).toBe(checkpoint!.origin);
    expect(BigInt(opened.size)).toBe(checkpoint!.treeSize);
    expect(opened.root).toEqual(Buffer.from(checkpoint!.rootHash));
    // A changed byte breaks the signature.
    expect(() => openNote(note.replace(/\n(\d+)\n/, (_m, n: string) => `\n${Number(n) + 1}\n`), key.origin, key.publicKey)).toThrow();

    // Recompute every leaf from the entries' contents, and the root from the leaves.
    const entries = (await allEntries()).slice(0, opened.size);
    const leaves = entries.map((e) => hashLeaf(entryBytes(e)));
    leaves.forEach((l, i) => expect(l.equals(Buffer.from(entries[i]!.leafHash)), `leaf ${i}`).toBe(true));
    expect(mth(leaves).equals(opened.root)).toBe(true);
  });

  it("serves inclusion proofs equal to PATH(m, D[n]) that verify per RFC 9162, for every leaf and many sizes", async () => {
    const { checkpoint } = await audit.getCheckpoint({});
    const n = Number(checkpoint!.treeSize);
    const leaves = (await allEntries()).slice(0, n).map((e) => hashLeaf(entryBytes(e)));
    expect(n).toBeGreaterThan(40);
    const sizes = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, n - 1, n];
    for (const size of sizes) {
      const root = mth(leaves.slice(0, size));
      for (let m = 0; m < size; m++) {
        const p = await audit.getInclusionProof({ leafIndex: BigInt(m), treeSize: BigInt(size) });
        expect(p.treeSize).toBe(BigInt(size));
        expect(p.hashes.map((x) => Buffer.from(x))).toEqual(path(m, leaves.slice(0, size)));
        expect(verifyInclusion(m, size, leaves[m]!, p.hashes, root), `leaf ${m} in ${size}`).toBe(true);
        // The wrong leaf does not verify.
        expect(verifyInclusion(m, size, sha256(Buffer.from("x")), p.hashes, root)).toBe(false);
      }
    }
    // tree_size 0 means the latest checkpoint.
    const latest = await audit.getInclusionProof({ leafIndex: 0n, treeSize: 0n });
    expect(latest.treeSize).toBeGreaterThanOrEqual(BigInt(n));
  }, 120_000);

  it("serves consistency proofs equal to PROOF(m, D[n]) that verify per RFC 9162, for every pair of sizes", async () => {
    const { checkpoint } = await audit.getCheckpoint({});
    const n = Math.min(Number(checkpoint!.treeSize), 40);
    const leaves = (await allEntries()).slice(0, n).map((e) => hashLeaf(entryBytes(e)));
    for (let second = 1; second <= n; second++) {
      const secondRoot = mth(leaves.slice(0, second));
      for (let first = 1; first <= second; first++) {
        const p = await audit.getConsistencyProof({ firstTreeSize: BigInt(first), secondTreeSize: BigInt(second) });
        expect(p.hashes.map((x) => Buffer.from(x))).toEqual(subproof(first, leaves.slice(0, second), true));
        const firstRoot = mth(leaves.slice(0, first));
        expect(verifyConsistencyProof(first, second, firstRoot, secondRoot, p.hashes), `${first} -> ${second}`).toBe(true);
        if (first < second) {
          expect(verifyConsistencyProof(first, second, sha256(Buffer.from("forged")), secondRoot, p.hashes)).toBe(false);
        }
      }
    }
  }, 120_000);

  it("signs new checkpoints on its own, at least every second while entries arrive", async () => {
    const { agent } = await h.grpc.agents.registerAgent({ name: "ticker", publicKey: publicKey() });
    const size = BigInt((await firstEntryOf(agent!.agentId)).seq) + 1n;
    // Poll the table (never calling GetCheckpoint, which would sign on demand); no timing assertion.
    for (let i = 0; i < 100; i++) {
      const { rows } = await sqlClient.query<{ n: string }>("select max(tree_size) as n from audit_checkpoints");
      if (BigInt(rows[0]!.n ?? "0") >= size) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no checkpoint covering ${size} entries was signed`);
  });

  it("signs alike on every replica sharing the database, or with the key from the environment", async () => {
    const replica = await startHarness({ databaseUrl: h.databaseUrl });
    try {
      const other = createClient(AuditService, replica.grpcTransport);
      expect((await other.getPublicKey({})).verifierKey).toBe((await audit.getPublicKey({})).verifierKey);
      // An entry written through one replica is in the other's next checkpoint.
      const { agent } = await replica.grpc.agents.registerAgent({ name: "via-replica", publicKey: publicKey() });
      const seq = (await firstEntryOf(agent!.agentId)).seq;
      const a = (await audit.getCheckpoint({})).checkpoint!;
      const b = (await other.getCheckpoint({})).checkpoint!;
      expect(a.treeSize).toBeGreaterThan(seq);
      if (a.treeSize === b.treeSize) expect(a.note).toBe(b.note);
    } finally {
      await replica.close();
    }

    const { privateKey, publicKey: pub } = generateKeyPairSync("ed25519");
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const own = await startHarness({ config: { auditSigningKey: pem, auditOrigin: "example.com/agentid" } });
    try {
      const c = createClient(AuditService, own.grpcTransport);
      const key = await c.getPublicKey({});
      expect(Buffer.from(key.publicKey)).toEqual(pub.export({ type: "spki", format: "der" }).subarray(-32));
      expect(key.origin).toBe("example.com/agentid");
      const { checkpoint } = await c.getCheckpoint({});
      // One entry: the bootstrap admin key's creation.
      expect(openNote(checkpoint!.note, key.origin, key.publicKey)).toMatchObject({ origin: "example.com/agentid", size: 1 });
      const [first] = (await c.listEntries({})).entries;
      expect(first?.kind).toBe("key.created");
      expect(Buffer.from(checkpoint!.rootHash)).toEqual(hashLeaf(entryBytes(first!)));
    } finally {
      await own.close();
    }
  });

  it("lists the checkpoints it has signed, largest first, each verifiable", async () => {
    const key = await audit.getPublicKey({});
    const { agent } = await h.grpc.agents.registerAgent({ name: "history", publicKey: publicKey() });
    await audit.getCheckpoint({});
    await h.grpc.tokens.issue({ agentId: agent!.agentId });
    const latest = (await audit.getCheckpoint({})).checkpoint!;
    const leaves = (await allEntries()).map((e) => hashLeaf(entryBytes(e)));
    const sizes: number[] = [];
    let pageToken = "";
    do {
      const page = await audit.listCheckpoints({ maxTreeSize: latest.treeSize, pageSize: 3, pageToken });
      for (const c of page.checkpoints) {
        const opened = openNote(c.note, key.origin, key.publicKey);
        expect(opened.root.equals(mth(leaves.slice(0, opened.size)))).toBe(true);
        sizes.push(opened.size);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(sizes[0]).toBe(Number(latest.treeSize));
    expect(sizes).toContain(Number(latest.treeSize) - 1);
    expect([...sizes].sort((a, b) => b - a)).toEqual(sizes);
    expect(new Set(sizes).size).toBe(sizes.length);
  });

  it("answers the same over Connect", async () => {
    const connect = createClient(
      AuditService,
      h.connectTransport,
    );
    const key = await connect.getPublicKey({});
    const { checkpoint } = await connect.getCheckpoint({});
    const opened = openNote(checkpoint!.note, key.origin, key.publicKey);
    const leaves = (await allEntries(connect)).slice(0, opened.size).map((e) => hashLeaf(entryBytes(e)));
    expect(mth(leaves).equals(opened.root)).toBe(true);
  });
});
