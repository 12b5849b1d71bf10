import { writeFileSync } from "node:fs";
import type { Client } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { AuditService } from "../../gen/agentid/v1/audit_pb.js";
import { openCheckpoint } from "../audit/note.js";
import { parseVerifierKey, verifyLog } from "../audit/verify.js";

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
        process.stdout.write(JSON.stringify(line) + "\n");
        continue;
      }
      const cols = [time, `#${e.seq}`, e.kind.padEnd(16)];
      if (!o.agent) cols.push(e.agentId || "-");
      cols.push(e.tokenId || "-", `by ${e.actor}`);
      if (e.reason) cols.push(`reason ${JSON.stringify(e.reason)}`);
      if (e.detailsJson !== "{}") cols.push(e.detailsJson);
      process.stdout.write(cols.join("  ") + "\n");
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  if (n === 0) process.stderr.write("no matching entries\n");
}

export async function auditVerify(
  client: Client<typeof AuditService>,
  o: { saved?: string; saveTo?: string; key?: string },
): Promise<boolean> {
  const r = await verifyLog(client, { savedCheckpoint: o.saved, verifierKey: o.key });
  const out = (line: string) => process.stdout.write(line + "\n");
  if (r.ok && r.checkpoint) {
    const root = Buffer.from(r.checkpoint.rootHash).toString("base64");
    out(`OK: ${r.entries} entries verify against the checkpoint signed by ${r.verifierKey}`);
    out(`tree size ${r.checkpoint.treeSize}, root ${root}`);
    if (r.savedSize !== undefined) out(`consistent with the saved checkpoint of size ${r.savedSize}`);
    if (o.saveTo) {
      writeFileSync(o.saveTo, r.checkpoint.note);
      out(`saved the checkpoint to ${o.saveTo}`);
    }
    return true;
  }
  out(`FAILED: the log does not verify (${r.problems.length} problem${r.problems.length === 1 ? "" : "s"})`);
  for (const p of r.problems) out(p.seq === undefined ? p.message : `entry ${p.seq}: ${p.message}`);
  if (o.saveTo) out(`not saving a checkpoint of a log that does not verify`);
  return false;
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
