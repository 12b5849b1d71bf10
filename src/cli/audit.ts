import { writeFileSync } from "node:fs";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { AuditService } from "../../gen/agentid/v1/audit_pb.js";
import { openCheckpoint, parseCosignerKey } from "../audit/note.js";
import { Witness } from "../audit/witness.js";
import { parseVerifierKey, verifyLog } from "../audit/verify.js";
import { json, shown } from "./terminal.js";

type Fail = (message: string) => never;

const AGE = /^(\d+)(s|m|h|d)$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** RFC 3339, a plain date (UTC midnight), or an age like 2h meaning that long before now. */
export function parseTime(flag: string, s: string, fail: Fail, now = Date.now()): Date {
  const age = AGE.exec(s);
  if (age) return new Date(now - Number(age[1]) * UNIT_MS[age[2] as keyof typeof UNIT_MS]);
  if (/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(s)) {
    const d = new Date(s.length === 10 ? `${s}T00:00:00Z` : s);
    if (!Number.isNaN(d.getTime())) return d;
  }
  fail(`${flag}: expected RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or an age (90m, 2h, 7d); got ${JSON.stringify(s)}`);
}

export async function auditLog(
  client: Client<typeof AuditService>,
  o: { agent?: string; kind?: string; since?: string; until?: string; json?: boolean },
  fail: Fail,
): Promise<void> {
  const since = o.since === undefined ? undefined : parseTime("--since", o.since, fail);
  const until = o.until === undefined ? undefined : parseTime("--until", o.until, fail);
  let pageToken = "";
  let n = 0;
  do {
    const page = await client.listEntries({
      agentId: o.agent ?? "",
      kind: o.kind ?? "",
      since: since && timestampFromDate(since),
      until: until && timestampFromDate(until),
      pageSize: 1000,
      pageToken,
    });
    for (const e of page.entries) {
      n++;
      const time = e.time ? timestampDate(e.time).toISOString() : "-";
      if (o.json) {
        const line = { seq: e.seq.toString(), time, kind: e.kind, agent_id: e.agentId, token_id: e.tokenId, actor: e.actor, reason: e.reason, details: JSON.parse(e.detailsJson) as unknown };
        process.stdout.write(json(line) + "\n");
        continue;
      }
      const cols = [time, `#${e.seq}`, e.kind.padEnd(16)];
      if (!o.agent) cols.push(e.agentId || "-");
      cols.push(e.tokenId || "-", `by ${e.actor}`);
      if (e.reason) cols.push(`reason ${JSON.stringify(e.reason)}`);
      if (e.detailsJson !== "{}") cols.push(e.detailsJson);
      process.stdout.write(shown(cols.join("  ")) + "\n");
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  if (n === 0) process.stderr.write("no matching entries\n");
}

/** Fetches the cosigned checkpoint (and key) of each witness given by URL; keys given directly are pinned. */
async function witnessInputs(specs: string[], fail: Fail): Promise<{ witnessed: { source: string; note: string }[]; keys: string[]; pinned: boolean }> {
  const urls = specs.filter((s) => /^https?:\/\//.test(s));
  const pinned = specs.filter((s) => !/^https?:\/\//.test(s));
  for (const k of pinned) {
    try {
      parseCosignerKey(k);
    } catch (err) {
      fail(`--witness: expected a witness URL (http://...) or a witness verifier key: ${(err as Error).message}`);
    }
  }
  const witnessed: { source: string; note: string }[] = [];
  const fetched: string[] = [];
  for (const url of urls) {
    const base = url.replace(/\/+$/, "");
    const get = async (path: string) => {
      const res = await fetch(`${base}/${path}`).catch((err: unknown) => fail(`--witness ${url}: ${(err as Error).message}`));
      if (res.status !== 200) fail(`--witness ${url}: GET /${path} answered ${res.status}: ${(await res.text()).trim()}`);
      return res.text();
    };
    witnessed.push({ source: url, note: await get("checkpoint") });
    if (pinned.length === 0) fetched.push((await get("key")).trim());
  }
  return { witnessed, keys: pinned.length > 0 ? pinned : fetched, pinned: pinned.length > 0 };
}

/** GETs below a tlog-tiles prefix, with the API key; a refusal to sign reads as FAILED_PRECONDITION. */
export function tileFetcher(url: string, apiKey?: string): (path: string) => Promise<Buffer> {
  const base = url.replace(/\/+$/, "");
  return async (path) => {
    const res = await fetch(`${base}/${path}`, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
    if (res.status === 503 && path === "checkpoint") throw new ConnectError((await res.text()).trim(), Code.FailedPrecondition);
    if (res.status !== 200) throw new Error(`GET /${path}: ${res.status} ${(await res.text()).trim()}`);
    return Buffer.from(await res.arrayBuffer());
  };
}

export async function auditVerify(
  client: Client<typeof AuditService>,
  o: { saved?: string; saveTo?: string; key?: string; witnesses?: string[]; minWitnesses?: number; tiles?: { url: string; apiKey?: string } },
  fail: Fail,
): Promise<boolean> {
  const out = (line: string) => process.stdout.write(line + "\n");
  const w = await witnessInputs(o.witnesses ?? [], fail);
  if (w.witnessed.length > 0 && !w.pinned) out(`trusting the keys the witnesses report (pin them with --witness VKEY): ${w.keys.join(", ")}`);
  const minWitnesses = o.minWitnesses ?? (w.witnessed.length > 0 ? 1 : 0);
  const tiles = o.tiles && tileFetcher(o.tiles.url, o.tiles.apiKey);
  const r = await verifyLog(client, { savedCheckpoint: o.saved, verifierKey: o.key, witnessed: w.witnessed, witnessKeys: w.keys, minWitnesses, tiles });
  if (r.ok && r.checkpoint) {
    const root = Buffer.from(r.checkpoint.rootHash).toString("base64");
    out(`OK: ${r.entries} entries verify against the checkpoint signed by ${r.verifierKey}`);
    out(`tree size ${r.checkpoint.treeSize}, root ${root}`);
    if (r.savedSize !== undefined) out(`consistent with the saved checkpoint of size ${r.savedSize}`);
    if (r.witnesses.length > 0) out(`extends checkpoints cosigned by ${r.witnesses.length} witness${r.witnesses.length === 1 ? "" : "es"}: ${r.witnesses.join(", ")}`);
    if (o.saveTo) {
      writeFileSync(o.saveTo, r.checkpoint.note);
      out(`saved the checkpoint to ${o.saveTo}`);
    }
    return true;
  }
  out(`FAILED: the log does not verify (${r.problems.length} problem${r.problems.length === 1 ? "" : "s"})`);
  for (const p of r.problems) out(shown(p.seq === undefined ? p.message : `entry ${p.seq}: ${p.message}`));
  if (o.saveTo) out(`not saving a checkpoint of a log that does not verify`);
  return false;
}

/**
 * Runs a witness: follows the log at the client's server, cosigns each checkpoint that extends
 * the last one it accepted, and serves its cosigned checkpoint. Resolves (with false) only
 * with `once`, or when the listener fails.
 */
export async function auditWitness(
  client: Client<typeof AuditService>,
  o: { state: string; name: string; logKey?: string; listen?: string; intervalMs: number; once: boolean },
  fail: Fail,
): Promise<boolean> {
  const log = (level: "info" | "error", message: string) =>
    process.stderr.write(`${new Date().toISOString()} ${level === "error" ? "ERROR" : "info"} witness: ${message}\n`);
  let witness: Witness;
  try {
    witness = Witness.open({ stateDir: o.state, name: o.name, log });
    if (o.logKey) witness.pinLogKey(o.logKey);
  } catch (err) {
    fail(`--state ${o.state}: ${(err as Error).message}`);
  }
  log("info", `witness key ${witness.cosigner.verifierKey}`);
  const source = {
    checkpoint: async () => (await client.getCheckpoint({})).checkpoint?.note ?? "",
    consistencyProof: async (first: bigint, second: bigint) => (await client.getConsistencyProof({ firstTreeSize: first, secondTreeSize: second })).hashes,
    verifierKey: async () => (await client.getPublicKey({})).verifierKey,
  };
  if (o.once) return (await witness.follow(source)) !== "alarm";
  if (o.listen !== undefined) {
    const m = /^(.*):(\d+)$/.exec(o.listen);
    if (!m) fail(`--listen: expected HOST:PORT, got ${JSON.stringify(o.listen)}`);
    const { url } = await witness.listen(m[1] || "127.0.0.1", Number(m[2]));
    log("info", `serving on ${url} (POST /add-checkpoint, GET /checkpoint, /key, /status, /metrics)`);
  }
  for (;;) {
    try {
      await witness.follow(source);
    } catch (err) {
      log("error", `cannot follow the log: ${(err as Error).message}`);
    }
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
}

export async function auditCheckpoint(client: Client<typeof AuditService>, o: { out?: string; key?: string }): Promise<void> {
  const vkey = o.key?.trim() || (await client.getPublicKey({})).verifierKey;
  const { name, key } = parseVerifierKey(vkey);
  const res = await client.getCheckpoint({});
  const note = res.checkpoint?.note ?? "";
  openCheckpoint(note, name, key);
  process.stdout.write(note);
  process.stderr.write(`signed by ${vkey}\n`);
  if (o.out) writeFileSync(o.out, note);
}
