// Watchers (their own process): N gRPC server streams over raw node:http2 sessions, to agentid's
// WatchRevocations or to the bare baseline server. Timestamps every message's arrival (wall clock,
// ms) and checks each stream's revisions are gap-free. Commands: open, report (see ctl.ts).
import http2 from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import { WatchRevocationsResponseSchema } from "../../gen/agentid/v1/revocation_pb.js";
import { emit, serve, wall } from "../lib/ctl.js";

interface S {
  buf?: Buffer;
  ready: boolean;
  last: number;
  events: number;
  gaps: number;
  closed: boolean;
}
const streams: S[] = [];
const sessions: http2.ClientHttp2Session[] = [];
let ready = 0;
let closedEarly = 0;
let firstError = "";
let record = true;
// Arrival times per revision; how many streams got it.
const arrivals = new Map<number, number[]>();
const counts = new Map<number, number>();
const decoded = new Map<string, number[]>();

function handle(s: S, payload: Buffer, t: number) {
  // Every stream of one view gets the same bytes for a batch: decode each distinct message once.
  const key = payload.toString("latin1");
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

function q(sorted: Float64Array, p: number) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : NaN;
}

serve(async (cmd) => {
  if (cmd.cmd === "open") {
    const { url, n, perSession, path, headers, after } = cmd as {
      url: string; n: number; perSession: number; path: string; headers: Record<string, string>; after: number;
    };
    record = cmd.record !== false;
    const body = Buffer.from(cmd.body as string, "base64");
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
    frame.writeUInt32BE(body.length, 1);
    for (let i = 0; i < n; i++) {
      if (i % perSession === 0) {
        const session = http2.connect(url, { settings: { initialWindowSize: 1 << 20 } });
        session.on("error", (e) => (firstError ||= String(e)));
        sessions.push(session);
      }
      const session = sessions[sessions.length - 1]!;
      const s: S = { ready: false, last: after, events: 0, gaps: 0, closed: false };
      streams.push(s);
      const st = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
      st.on("data", (c: Buffer) => onData(s, c));
      st.on("trailers", (t) => (firstError ||= `trailers: ${JSON.stringify(t)}`));
      st.on("error", (e) => (firstError ||= String(e)));
      st.on("close", () => {
        s.closed = true;
        closedEarly++;
      });
      st.end(frame);
      // Don't flood the server's accept path all at once.
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
    const deadline = Date.now() + (cmd.timeoutMs ?? 60_000);
    while (ready + closedEarly < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return { ready, closedEarly, firstError };
  }
  if (cmd.cmd === "report") {
    // sent: revision -> wall-clock ms of the reference point (Revoke returned, or write start).
    const sent = cmd.sent as Record<string, number>;
    const lat: number[] = [];
    const last: number[] = [];
    const spread: number[] = [];
    for (const [rev, t0] of Object.entries(sent)) {
      const a = arrivals.get(Number(rev));
      if (!a) continue;
      let lo = Infinity;
      let hi = -Infinity;
      for (const t of a) {
        lat.push(t - t0);
        if (t < lo) lo = t;
        if (t > hi) hi = t;
      }
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
    return {
      streams: streams.length,
      ready,
      closedEarly,
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
