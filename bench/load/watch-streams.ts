// Watchers (their own process): N gRPC server streams over raw node:http2 sessions, to agentid's
// WatchRevocations or to the bare baseline server. Timestamps every event's arrival (wall clock,
// ms), checks each stream's revisions are gap-free (admin streams see every revision) and, when
// asked, reconnects streams that end, from their last revision, like a client would: with a fixed
// random delay (an aggressive client) or exponential full-jitter backoff honouring the server's
// retry-after-ms (the SDK's policy). Commands: open, report, pid (see ctl.ts).
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WatchRevocationsRequestSchema, WatchRevocationsResponseSchema } from "../../gen/agentid/v1/revocation_pb.js";
import { emit, serve, wall } from "../lib/ctl.js";

type Retry = { mode: "fixed"; minMs: number; maxMs: number } | { mode: "backoff"; initialMs: number; maxMs: number };

interface S {
  slot: number;
  buf?: Buffer;
  ready: boolean;
  last: number;
  events: number;
  gaps: number;
  closed: boolean;
  attempt: number;
  status?: string;
  retryAfterMs: number;
}
interface Slot {
  session: http2.ClientHttp2Session;
  urlIndex: number;
}
const streams: S[] = [];
const slots: Slot[] = [];
let ready = 0;
let closedEarly = 0;
let reconnects = 0;
/** Streams that ended with an error carrying no retry-after-ms (a refusal the client could not act on). */
let refusedWithoutAdvice = 0;
const codes: Record<string, number> = {};
let firstError = "";
let record = true;
let urls: string[] = [];
let path = "";
let headers: Record<string, string> = {};
let retry: Retry | undefined;
// Arrival times per revision; how many streams got it.
const arrivals = new Map<number, number[]>();
const counts = new Map<number, number>();
// Every stream of one view gets the same bytes for a batch: decode each distinct message once.
const decoded = new Map<string, number[]>();

function handle(s: S, payload: Buffer, t: number) {
  // Identical frames share their length and their first and last bytes (the first and last events);
  // keying on those avoids hashing whole catch-up frames, tens of KiB each, once per stream.
  const key = `${payload.length}:${payload.toString("latin1", 0, 48)}:${payload.toString("latin1", Math.max(0, payload.length - 48))}`;
  let revs = decoded.get(key);
  if (revs === undefined) {
    if (decoded.size > 10_000) decoded.clear();
    const m = fromBinary(WatchRevocationsResponseSchema, payload);
    revs = m.events.map((e) => Number(e.revision));
    decoded.set(key, revs);
  }
  if (!s.ready) {
    s.ready = true;
    ready++;
  }
  s.attempt = 0;
  for (const rev of revs) {
    if (rev !== s.last + 1) s.gaps++;
    s.last = rev;
    s.events++;
    if (record) {
      let a = arrivals.get(rev);
      if (!a) arrivals.set(rev, (a = []));
      a.push(t);
    }
    const c = (counts.get(rev) ?? 0) + 1;
    counts.set(rev, c);
    if (c === streams.length) emit({ done: rev, at: t });
  }
}

function onData(s: S, chunk: Buffer) {
  const t = wall();
  const buf = s.buf ? Buffer.concat([s.buf, chunk]) : chunk;
  let off = 0;
  while (buf.length - off >= 5) {
    const len = buf.readUInt32BE(off + 1);
    if (buf.length - off - 5 < len) break;
    handle(s, buf.subarray(off + 5, off + 5 + len), t);
    off += 5 + len;
  }
  s.buf = off < buf.length ? buf.subarray(off) : undefined;
}

function session(slotIndex: number): http2.ClientHttp2Session {
  let slot = slots[slotIndex];
  if (!slot || slot.session.closed || slot.session.destroyed) {
    // A dead connection (its replica went away) moves the whole slot to the next URL.
    const urlIndex = slot ? (slot.urlIndex + 1) % urls.length : 0;
    const s = http2.connect(urls[urlIndex]!, { settings: { initialWindowSize: 1 << 20 } });
    s.on("error", (e) => (firstError ||= String(e)));
    // The connection's window too (HTTP/2's default is 64 KB for all its streams): a measuring
    // client busy decoding must not set the pace itself (issue 28).
    s.on("connect", () => s.setLocalWindowSize(16 << 20));
    slots[slotIndex] = slot = { session: s, urlIndex };
  }
  return slot.session;
}

function frame(after: number): Buffer {
  const body = toBinary(WatchRevocationsRequestSchema, create(WatchRevocationsRequestSchema, { afterRevision: BigInt(after) }));
  const f = Buffer.alloc(5 + body.length);
  f.writeUInt32BE(body.length, 1);
  Buffer.from(body).copy(f, 5);
  return f;
}

function openStream(s: S) {
  s.buf = undefined;
  s.status = undefined;
  s.retryAfterMs = 0;
  let st: http2.ClientHttp2Stream;
  try {
    st = session(s.slot).request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
  } catch (e) {
    firstError ||= String(e);
    return ended(s);
  }
  const status = (h: http2.IncomingHttpHeaders) => {
    if (h["grpc-status"] !== undefined) s.status = String(h["grpc-status"]);
    if (h["retry-after-ms"] !== undefined) s.retryAfterMs = Number(h["retry-after-ms"]);
    if (s.status && s.status !== "0" && !firstError) firstError = `grpc-status ${s.status}: ${decodeURIComponent(String(h["grpc-message"] ?? ""))}`;
  };
  st.on("response", status);
  st.on("trailers", status);
  st.on("data", (c: Buffer) => onData(s, c));
  st.on("error", () => {});
  st.on("close", () => ended(s));
  st.end(frame(s.last));
}

function ended(s: S) {
  const code = s.status ?? "no status (connection lost)";
  codes[code] = (codes[code] ?? 0) + 1;
  if (s.status && s.status !== "0" && !(s.retryAfterMs > 0) && !["14", "1"].includes(s.status)) refusedWithoutAdvice++;
  if (!retry) {
    s.closed = true;
    closedEarly++;
    return;
  }
  reconnects++;
  const delay =
    retry.mode === "fixed"
      ? retry.minMs + Math.random() * (retry.maxMs - retry.minMs)
      : (s.retryAfterMs > 0 ? s.retryAfterMs : 0) +
        Math.random() * Math.max(s.retryAfterMs, Math.min(retry.maxMs, retry.initialMs * 2 ** Math.min(s.attempt, 20)));
  s.attempt++;
  setTimeout(() => openStream(s), delay);
}

/** A revision's first and last arrival (wall clock, ms), if it arrived. */
function bounds(rev: number): [number, number] | null {
  const a = arrivals.get(rev);
  if (!a) return null;
  let lo = Infinity;
  let hi = -Infinity;
  for (const t of a) {
    if (t < lo) lo = t;
    if (t > hi) hi = t;
  }
  return [lo, hi];
}

function q(sorted: Float64Array, p: number) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : NaN;
}

serve(async (cmd) => {
  if (cmd.cmd === "open") {
    const { n, perSession, after } = cmd as { n: number; perSession: number; after: number };
    urls = (cmd.urls as string[] | undefined) ?? [cmd.url as string];
    path = cmd.path as string;
    headers = cmd.headers as Record<string, string>;
    retry = cmd.retry as Retry | undefined;
    record = cmd.record !== false;
    const base = streams.length;
    for (let i = 0; i < n; i++) {
      const s: S = { slot: Math.floor((base + i) / perSession), ready: false, last: after, events: 0, gaps: 0, closed: false, attempt: 0, retryAfterMs: 0 };
      streams.push(s);
      openStream(s);
      // Don't flood the server's accept path all at once.
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
    if (cmd.wait === false) return { opened: n };
    const deadline = Date.now() + (cmd.timeoutMs ?? 60_000);
    while (ready + closedEarly < streams.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return { ready, closedEarly, firstError };
  }
  if (cmd.cmd === "report") {
    // sent: revision -> wall-clock ms of the reference point (Revoke sent or returned, or write start).
    const sent = (cmd.sent ?? {}) as Record<string, number>;
    const lat: number[] = [];
    const last: number[] = [];
    const spread: number[] = [];
    for (const [rev, t0] of Object.entries(sent)) {
      const a = arrivals.get(Number(rev));
      if (!a) continue;
      for (const t of a) lat.push(t - t0);
      const [lo, hi] = bounds(Number(rev))!;
      last.push(hi - t0);
      spread.push(hi - lo);
    }
    const L = Float64Array.from(lat).sort();
    const La = Float64Array.from(last).sort();
    const Sp = Float64Array.from(spread).sort();
    let gaps = 0;
    let minEvents = Infinity;
    let maxEvents = 0;
    let minLast = Infinity;
    let maxLast = -Infinity;
    for (const s of streams) {
      gaps += s.gaps;
      minEvents = Math.min(minEvents, s.events);
      maxEvents = Math.max(maxEvents, s.events);
      minLast = Math.min(minLast, s.last);
      maxLast = Math.max(maxLast, s.last);
    }
    // samples: every latency (rounded to 10 µs) and each revision's first and last arrival, so
    // that a bench can pool several watcher processes exactly.
    const samples = cmd.samples
      ? { lat: Array.from(L, (x) => Math.round(x * 100) / 100), firstLast: Object.fromEntries(Object.keys(sent).map((rev) => [rev, bounds(Number(rev))])) }
      : {};
    // head: how many streams do not hold that revision yet.
    const behind = cmd.head === undefined ? {} : { behind: streams.filter((s) => s.last < cmd.head).length };
    return {
      ...samples,
      ...behind,
      streams: streams.length,
      ready,
      closedEarly,
      reconnects,
      refusedWithoutAdvice,
      codes,
      firstError,
      gaps,
      minEvents,
      maxEvents,
      minLast,
      maxLast,
      arrivals: L.length,
      p50: q(L, 0.5),
      p99: q(L, 0.99),
      lastP50: q(La, 0.5),
      lastP99: q(La, 0.99),
      spreadP50: q(Sp, 0.5),
      spreadP99: q(Sp, 0.99),
    };
  }
  if (cmd.cmd === "pid") return { pid: process.pid };
  throw new Error(`unknown command ${cmd.cmd}`);
});
process.stdout.write(JSON.stringify({ pid: process.pid }) + "\n");
