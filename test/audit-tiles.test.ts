import { createHash, createPublicKey, verify } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { createClient, type Client } from "@connectrpc/connect";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { appendAuditEntry } from "../src/audit/append.js";
import { verifyLog } from "../src/audit/verify.js";
import { tileFetcher } from "../src/cli/audit.js";
import { startHarness, type Harness } from "./support/harness.js";

// ---------------------------------------------------------------------------------------------
// A tlog-tiles client written from the specs (C2SP tlog-tiles, tlog-checkpoint, signed-note,
// RFC 6962 §2.1) with plain HTTP GETs. It shares no code with src/audit.
// ---------------------------------------------------------------------------------------------

const sha256 = (...parts: Uint8Array[]) => createHash("sha256").update(Buffer.concat(parts)).digest();

function mth(hashes: Buffer[]): Buffer {
  if (hashes.length === 0) return sha256();
  if (hashes.length === 1) return hashes[0]!;
  let k = 1;
  while (k * 2 < hashes.length) k *= 2;
  return sha256(Buffer.from([1]), mth(hashes.slice(0, k)), mth(hashes.slice(k)));
}

/** "x001/x234/067" for 1234067. */
function indexPath(n: number): string {
  const groups: string[] = [];
  do {
    groups.unshift(String(n % 1000).padStart(3, "0"));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return groups.map((g, i) => (i === groups.length - 1 ? g : `x${g}`)).join("/");
}

/** Opens a checkpoint signed by an Ed25519 signed-note key (type 0x01). */
function openCheckpoint(note: string, name: string, rawKey: Uint8Array): { origin: string; size: number; root: Buffer } {
  const [body, sigs] = note.split("\n\n") as [string, string];
  const keyId = sha256(Buffer.from(`${name}\n`), Buffer.from([0x01]), rawKey).subarray(0, 4);
  const spki = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), rawKey]);
  const pub = createPublicKey({ key: spki, format: "der", type: "spki" });
  const ok = sigs
    .split("\n")
    .filter((l) => l.startsWith(`\u2014 ${name} `))
    .some((l) => {
      const sig = Buffer.from(l.split(" ")[2]!, "base64");
      return sig.subarray(0, 4).equals(keyId) && verify(null, Buffer.from(`${body}\n`), pub, sig.subarray(4));
    });
  if (!ok) throw new Error("checkpoint signature does not verify");
  const [origin, size, root] = body.split("\n") as [string, string, string];
  return { origin, size: Number(size), root: Buffer.from(root, "base64") };
}

interface Fetched {
  status: number;
  headers: Headers;
  body: Buffer;
}

class TilesClient {
  constructor(
    private readonly base: string,
    private readonly key?: string,
  ) {}

  async get(path: string, headers: Record<string, string> = {}): Promise<Fetched> {
    const res = await fetch(`${this.base}/${path}`, {
      headers: { ...(this.key ? { authorization: `Bearer ${this.key}` } : {}), ...headers },
    });
    return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
  }

  async must(path: string): Promise<Buffer> {
    const r = await this.get(path);
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body.toString()}`);
    return r.body;
  }

  /** The hashes of one tile of a tree of `size` leaves: full, or partial as the spec says. */
  async tile(level: number, n: number, size: number): Promise<Buffer[]> {
    const full = Math.floor(size / 256 ** (level + 1));
    const width = n < full ? 256 : Math.floor(size / 256 ** level) % 256;
    const body = await this.must(`tile/${level}/${indexPath(n)}${width === 256 ? "" : `.p/${width}`}`);
    expect(body.length).toBe(width * 32);
    return Array.from({ length: width }, (_, i) => body.subarray(i * 32, i * 32 + 32));
  }

  /** All hashes at tile level `level` for a tree of `size` leaves. */
  async level(level: number, size: number): Promise<Buffer[]> {
    const count = Math.floor(size / 256 ** level);
    const out: Buffer[] = [];
    for (let n = 0; n * 256 < count; n++) out.push(...(await this.tile(level, n, size)));
    return out;
  }

  async entries(n: number, width: number): Promise<Buffer[]> {
    const body = await this.must(`tile/entries/${indexPath(n)}${width === 256 ? "" : `.p/${width}`}`);
    const out: Buffer[] = [];
    for (let off = 0; off < body.length; ) {
      const len = body.readUInt16BE(off);
      out.push(body.subarray(off + 2, off + 2 + len));
      off += 2 + len;
    }
    return out;
  }
}

let h: Harness;
let audit: Client<typeof AuditService>;
let base: string;
let sql: pg.Client;

beforeAll(async () => {
  h = await startHarness();
  audit = createClient(AuditService, h.grpcTransport);
  base = `http://127.0.0.1:${h.server.httpPort}`;
  sql = new pg.Client({ connectionString: h.databaseUrl });
  await sql.connect();
  // Enough entries for full tiles at level 0 and a partial one at level 1.
  await h.ctx.db.transaction().execute(async (tx) => {
    for (let i = 0; i < 600; i++) await appendAuditEntry(tx, { kind: "test.filled", actor: "test", details: { i } });
  });
});

afterAll(async () => {
  await sql.end();
  await h.close();
});

describe("static tiles (C2SP tlog-tiles)", () => {
  it("an independent client computes the signed root from tiles, and every entry from its bundle", async () => {
    const { origin, publicKey } = await audit.getPublicKey({});
    const client = new TilesClient(base, h.adminKey);
    const cpRes = await client.get("checkpoint");
    expect(cpRes.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    const cp = openCheckpoint(cpRes.body.toString(), origin, publicKey);
    expect(cp.size).toBeGreaterThan(600);

    const leaves = await client.level(0, cp.size);
    expect(leaves).toHaveLength(cp.size);
    expect(mth(leaves).equals(cp.root)).toBe(true);
    // Level 1 holds the roots of the full level-0 tiles.
    const level1 = await client.level(1, cp.size);
    expect(level1).toHaveLength(Math.floor(cp.size / 256));
    level1.forEach((h1, i) => expect(h1.equals(mth(leaves.slice(i * 256, i * 256 + 256)))).toBe(true));

    // Entry bundles: each entry hashes to its leaf, and is the documented canonical JSON.
    for (let n = 0; n * 256 < cp.size; n++) {
      const width = Math.min(256, cp.size - n * 256);
      const entries = await client.entries(n, width);
      expect(entries).toHaveLength(width);
      entries.forEach((e, i) => {
        expect(sha256(Buffer.from([0]), e).equals(leaves[n * 256 + i]!)).toBe(true);
        expect((JSON.parse(e.toString()) as { seq: number }).seq).toBe(n * 256 + i);
      });
    }
  });

  it("caches full tiles forever, compresses entry bundles, and refuses bad paths and tiles beyond the log", async () => {
    const client = new TilesClient(base, h.adminKey);
    const full = await client.get("tile/0/000");
    expect(full.status).toBe(200);
    expect(full.headers.get("cache-control")).toContain("immutable");
    expect(full.headers.get("content-type")).toBe("application/octet-stream");
    expect((await client.get("checkpoint")).headers.get("cache-control")).toBe("no-cache");
    const gz = await fetch(`${base}/tile/entries/000`, { headers: { authorization: `Bearer ${h.adminKey}`, "accept-encoding": "gzip" } });
    expect(gz.status).toBe(200);
    expect(gz.headers.get("content-encoding")).toBe("gzip");
    // (fetch has decompressed it.)
    expect(Buffer.from(await gz.arrayBuffer()).readUInt16BE(0)).toBeGreaterThan(0);
    for (const bad of ["tile/0/1", "tile/64/000", "tile/0/000.p/256", "tile/0/x000/001", "tile/nope/000"]) {
      expect((await client.get(bad)).status, bad).toBe(404);
    }
    expect((await client.get("tile/0/x001/000")).status).toBe(404);
  });

  it("serves the tiles only to API keys, and entry bundles only to admins", async () => {
    const anonymous = new TilesClient(base);
    for (const p of ["checkpoint", "tile/0/000", "tile/entries/000"]) {
      const r = await anonymous.get(p);
      expect(r.status, p).toBe(401);
      expect(r.headers.get("www-authenticate")).toBe("Bearer");
    }
    const keys = createClient(KeyService, h.grpcTransport);
    const issuer = new TilesClient(base, (await keys.createApiKey({ name: "tiles reader", role: Role.ISSUER })).secret);
    expect((await issuer.get("checkpoint")).status).toBe(200);
    expect((await issuer.get("tile/0/000")).status).toBe(200);
    expect((await issuer.get("tile/entries/000")).status).toBe(403);
  });

  it("audit verify reads the tiles, and names a changed entry from them", async () => {
    const tiles = tileFetcher(base, h.adminKey);
    const ok = await verifyLog(audit, { tiles });
    expect(ok.problems).toEqual([]);
    expect(ok.entries).toBeGreaterThan(600);
    await sql.query("update audit_entries set reason = 'nothing happened' where seq = 299");
    const bad = await verifyLog(audit, { tiles });
    expect(bad.ok).toBe(false);
    expect(bad.problems.map((p) => p.seq)).toContain(299n);
    await sql.query("update audit_entries set reason = '' where seq = 299");
  });

  it("a changed entry no longer hashes to its leaf in the tiles", async () => {
    await sql.query("update audit_entries set actor = 'someone else' where seq = 300");
    const client = new TilesClient(base, h.adminKey);
    const leaves = await client.tile(0, 1, 512);
    const entries = await client.entries(1, 256);
    expect(sha256(Buffer.from([0]), entries[300 - 256]!).equals(leaves[300 - 256]!)).toBe(false);
    expect(sha256(Buffer.from([0]), entries[301 - 256]!).equals(leaves[301 - 256]!)).toBe(true);
  });
});
