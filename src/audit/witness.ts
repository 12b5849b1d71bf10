import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import { verifyConsistency } from "./merkle.js";
import { Cosigner, NoteError, noteBody, openCheckpoint, parseSigningKey, type ParsedCheckpoint } from "./note.js";
import { readIfExists, writePrivateFile } from "../lib/private-file.js";

// A witness (C2SP tlog-witness): a process apart from the log that keeps the latest checkpoint
// it accepted, accepts a new one only with a consistency proof from it, and cosigns what it
// accepts (C2SP tlog-cosignature). A log that forks (shows two histories) or rolls back is
// refused, and the conflicting signed checkpoints are kept as evidence. The witness trusts one
// log key (pinned in its state folder), never the log's database.

const MAX_BODY = 64 * 1024;
const MAX_PROOF = 63;

export interface WitnessOptions {
  /** Holds the witness key (created on first start), the pinned log key and the latest checkpoint. */
  stateDir: string;
  /** The cosigner name, e.g. witness.example.com/w1. */
  name: string;
  /** Report each acceptance and alarm. */
  log?: (level: "info" | "error", message: string) => void;
}

export interface AddResult {
  status: number;
  body: string;
  contentType?: string;
}


function parseLogKey(vkey: string): { name: string; key: Buffer } {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim());
  const raw = Buffer.from(m?.[3] ?? "", "base64");
  if (!m || raw.length !== 33 || raw[0] !== 1) throw new NoteError(`not an Ed25519 log verifier key: ${vkey}`);
  return { name: m[1]!, key: raw.subarray(1) };
}

export class Witness {
  readonly cosigner: Cosigner;
  private logKey: { vkey: string; name: string; key: Buffer } | undefined;
  /** The latest accepted checkpoint, with this witness's cosignature. */
  private latestNote: string | undefined;
  private latestCp: ParsedCheckpoint | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  readonly alarms: string[] = [];

  private constructor(private readonly o: WitnessOptions, cosigner: Cosigner) {
    this.cosigner = cosigner;
  }

  static open(o: WitnessOptions): Witness {
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    const keyFile = join(o.stateDir, "witness-key.pem");
    let pem = readIfExists(keyFile);
    if (!pem) {
      pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
      writeFileSync(keyFile, pem, { mode: 0o600, flag: "wx" });
    }
    const w = new Witness(o, new Cosigner(o.name, parseSigningKey(pem)));
    const vkey = readIfExists(join(o.stateDir, "log-key"));
    if (vkey) w.logKey = { vkey: vkey.trim(), ...parseLogKey(vkey) };
    const latest = readIfExists(join(o.stateDir, "checkpoint"));
    if (latest && w.logKey) {
      w.latestNote = latest;
      w.latestCp = openCheckpoint(latest, w.logKey.name, w.logKey.key);
    }
    return w;
  }

  /** The log key this witness trusts, if pinned. */
  get pinnedLogKey(): string | undefined {
    return this.logKey?.vkey;
  }

  /** Pins the log's verifier key; refuses to replace a pinned one. */
  pinLogKey(vkey: string): void {
    if (this.logKey) {
      if (this.logKey.vkey !== vkey.trim()) throw new NoteError(`this witness follows the log key ${this.logKey.vkey}, not ${vkey}`);
      return;
    }
    const parsed = parseLogKey(vkey);
    writePrivateFile(join(this.o.stateDir, "log-key"), `${vkey.trim()}\n`);
    this.logKey = { vkey: vkey.trim(), ...parsed };
  }

  /** The latest accepted checkpoint with this witness's cosignature. */
  get latest(): string | undefined {
    return this.latestNote;
  }

  get latestSize(): bigint {
    return this.latestCp?.treeSize ?? 0n;
  }

  private alarm(why: string, evidence: string): void {
    const message = `ALARM: ${why}`;
    this.alarms.push(message);
    const file = join(this.o.stateDir, `alarm-${new Date().toISOString().replaceAll(":", "")}-${randomBytes(3).toString("hex")}.txt`);
    writeFileSync(
      file,
      `${message}\n\nlatest checkpoint this witness accepted:\n${this.latestNote ?? "(none)\n"}\nconflicting checkpoint, signed by the log:\n${evidence}`,
      { mode: 0o600 },
    );
    this.o.log?.("error", `${message} (evidence in ${file})`);
  }

  /** POST /add-checkpoint, as C2SP tlog-witness specifies it. */
  addCheckpoint(request: string): Promise<AddResult> {
    const run = this.queue.then(() => this.add(request));
    this.queue = run.catch(() => {});
    return run;
  }

  /** Checks and, if consistent, cosigns; one at a time (check and persist are atomic). */
  private add(request: string): AddResult {
    const bad = (body: string): AddResult => ({ status: 400, body: `${body}\n` });
    const blank = request.indexOf("\n\n");
    if (blank < 0) return bad("expected an old size line, proof lines, an empty line and a checkpoint");
    const head = request.slice(0, blank).split("\n");
    const note = request.slice(blank + 2);
    const old = /^old (0|[1-9][0-9]{0,18})$/.exec(head[0] ?? "");
    if (!old) return bad('the first line must be "old <size>"');
    const proofLines = head.slice(1);
    if (proofLines.length > MAX_PROOF) return bad(`at most ${MAX_PROOF} consistency proof lines`);
    const proof = proofLines.map((l) => Buffer.from(l, "base64"));
    if (proof.some((p, i) => p.length !== 32 || p.toString("base64") !== proofLines[i])) return bad("each proof line must be one base64 SHA-256 hash");
    const oldSize = BigInt(old[1]!);
    if (!this.logKey) return { status: 404, body: "this witness follows no log yet\n" };
    const origin = note.split("\n", 1)[0];
    if (origin !== this.logKey.name) return { status: 404, body: `unknown log ${JSON.stringify(origin)}\n` };
    let cp: ParsedCheckpoint;
    try {
      cp = openCheckpoint(note, this.logKey.name, this.logKey.key);
    } catch (err) {
      return { status: 403, body: `${(err as Error).message}\n` };
    }
    if (oldSize > cp.treeSize) return bad(`old size ${oldSize} is larger than the checkpoint's ${cp.treeSize}`);
    const latest = this.latestCp;
    const latestSize = latest?.treeSize ?? 0n;
    if (oldSize !== latestSize) return { status: 409, body: `${latestSize}\n`, contentType: "text/x.tlog.size" };
    if (latest && cp.treeSize === latest.treeSize) {
      if (!Buffer.from(cp.rootHash).equals(Buffer.from(latest.rootHash))) {
        this.alarm(`fork: the log signed two different trees of ${cp.treeSize} entries`, note);
        return { status: 409, body: `${latestSize}\n`, contentType: "text/x.tlog.size" };
      }
    } else if (latest && latestSize > 0n) {
      if (!verifyConsistency(Number(latestSize), Number(cp.treeSize), latest.rootHash, cp.rootHash, proof)) {
        this.alarm(`fork: the log's tree of ${cp.treeSize} entries does not extend the tree of ${latestSize} this witness cosigned (the consistency proof fails)`, note);
        return { status: 422, body: "the consistency proof does not verify\n" };
      }
    } else if (proof.length > 0) {
      return bad("the proof must be empty when the old size is 0");
    }
    // Only the log's signature that verified is kept beside ours: other lines are the submitter's,
    // even those under the log's name.
    const cosignature = this.cosigner.cosign(note);
    const stored = `${noteBody(note)}\n${cp.signature}\n${cosignature}`;
    writePrivateFile(join(this.o.stateDir, "checkpoint"), stored);
    this.latestNote = stored;
    this.latestCp = cp;
    if (!latest || cp.treeSize !== latest.treeSize) this.o.log?.("info", `cosigned the log at ${cp.treeSize} entries`);
    return { status: 200, body: cosignature };
  }

  /**
   * One step of following a log: its current checkpoint, and a consistency proof from the
   * latest one accepted. A rollback (a smaller tree than one already cosigned) is an alarm too.
   */
  async follow(log: {
    checkpoint(): Promise<string>;
    consistencyProof(first: bigint, second: bigint): Promise<Uint8Array[]>;
    verifierKey(): Promise<string>;
  }): Promise<"accepted" | "unchanged" | "alarm"> {
    if (!this.logKey) {
      const vkey = await log.verifierKey();
      this.pinLogKey(vkey);
      this.o.log?.("info", `following the log key ${vkey} (trusted on first use; pin it with --log-key)`);
    }
    const note = await log.checkpoint();
    let cp: ParsedCheckpoint;
    try {
      cp = openCheckpoint(note, this.logKey!.name, this.logKey!.key);
    } catch (err) {
      this.alarm(`the log's checkpoint is not signed by its key ${this.logKey!.vkey}: ${(err as Error).message}`, note);
      return "alarm";
    }
    const latestSize = this.latestSize;
    if (cp.treeSize < latestSize) {
      this.alarm(`rollback: the log now signs ${cp.treeSize} entries, but this witness cosigned ${latestSize}`, note);
      return "alarm";
    }
    if (this.latestCp && cp.treeSize === latestSize && Buffer.from(cp.rootHash).equals(Buffer.from(this.latestCp.rootHash))) return "unchanged";
    const proof = latestSize > 0n && cp.treeSize > latestSize ? await log.consistencyProof(latestSize, cp.treeSize) : [];
    const body = `old ${latestSize}\n${proof.map((p) => `${Buffer.from(p).toString("base64")}\n`).join("")}\n${note}`;
    const r = await this.addCheckpoint(body);
    if (r.status === 200) return "accepted";
    if (r.status === 409 || r.status === 422) return "alarm";
    throw new Error(`the witness refused the log's checkpoint: ${r.status} ${r.body.trim()}`);
  }

  /** HTTP: POST /add-checkpoint (C2SP tlog-witness); GET /checkpoint, /key, /status, /metrics. */
  listen(host: string, port: number): Promise<{ server: Server; url: string }> {
    const server = createServer((req, res) => void this.handle(req, res));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        const addr = server.address();
        const p = typeof addr === "object" && addr ? addr.port : port;
        resolve({ server, url: `http://${host}:${p}` });
      });
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body: string, type = "text/plain; charset=utf-8") => {
      res.writeHead(status, { "content-type": type, "content-length": String(Buffer.byteLength(body)), "cache-control": "no-store" });
      res.end(body);
    };
    const path = req.url?.split("?", 2)[0];
    if (req.method === "POST" && path === "/add-checkpoint") {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of req) {
        size += (c as Buffer).length;
        if (size > MAX_BODY) return send(413, "request body too large\n");
        chunks.push(c as Buffer);
      }
      const r = await this.addCheckpoint(Buffer.concat(chunks).toString("utf8"));
      return send(r.status, r.body, r.contentType);
    }
    if (req.method !== "GET") return send(405, "use GET, or POST /add-checkpoint\n");
    if (path === "/checkpoint") return this.latestNote ? send(200, this.latestNote) : send(404, "no checkpoint cosigned yet\n");
    if (path === "/key") return send(200, `${this.cosigner.verifierKey}\n`);
    if (path === "/status") {
      return send(
        200,
        JSON.stringify({ log_key: this.logKey?.vkey ?? null, tree_size: String(this.latestSize), alarms: this.alarms }),
        "application/json",
      );
    }
    if (path === "/metrics") {
      return send(
        200,
        "# HELP agentid_witness_tree_size Entries in the latest checkpoint this witness cosigned.\n" +
          "# TYPE agentid_witness_tree_size gauge\n" +
          `agentid_witness_tree_size ${this.latestSize}\n` +
          "# HELP agentid_witness_alarms_total Forks and rollbacks seen since the witness started.\n" +
          "# TYPE agentid_witness_alarms_total counter\n" +
          `agentid_witness_alarms_total ${this.alarms.length}\n`,
        "text/plain; version=0.0.4",
      );
    }
    return send(404, "not found\n");
  }
}
