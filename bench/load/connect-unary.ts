// Load generator (its own process): Connect-protocol unary calls with pre-encoded binary bodies,
// over HTTP/1.1 (keep-alive) or cleartext HTTP/2.
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import { closedLoop } from "./stats.js";

const opts = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as {
  url: string; // http://127.0.0.1:port
  path: string;
  httpVersion: "1.1" | "2";
  requests: string[];
  concurrency: number;
  channels: number;
  warmupMs: number;
  durationMs: number;
  authorization?: string;
};
const bodies = opts.requests.map((b) => Buffer.from(b, "base64"));
const base = new URL(opts.url);
const headers = { "content-type": "application/proto", "connect-protocol-version": "1", ...(opts.authorization ? { authorization: opts.authorization } : {}) };

/** Reads the body; resolves if the status (known by the end) was 200. */
function drain(res: NodeJS.ReadableStream, status: () => number | undefined, resolve: () => void, reject: (e: Error) => void) {
  res.on("data", () => {});
  res.on("end", () => (status() === 200 ? resolve() : reject(new Error(`HTTP ${status()}`))));
  res.on("error", reject);
}

let once: (i: number) => Promise<void>;
let close = () => {};
if (opts.httpVersion === "1.1") {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency });
  once = (i) =>
    new Promise((resolve, reject) => {
      const body = bodies[i % bodies.length]!;
      const req = http.request(
        { host: base.hostname, port: base.port, path: opts.path, method: "POST", agent, headers: { ...headers, "content-length": body.length } },
        (res) => drain(res, () => res.statusCode, resolve, reject),
      );
      req.on("error", reject);
      req.end(body);
    });
  close = () => agent.destroy();
} else {
  const sessions = Array.from({ length: opts.channels }, () => http2.connect(opts.url));
  once = (i) =>
    new Promise((resolve, reject) => {
      const stream = sessions[i % sessions.length]!.request({ ":method": "POST", ":path": opts.path, ...headers });
      let status: number | undefined;
      stream.on("response", (h) => (status = Number(h[":status"])));
      drain(stream, () => status, resolve, reject);
      stream.end(bodies[i % bodies.length]!);
    });
  close = () => sessions.forEach((s) => s.close());
}

const summary = await closedLoop(opts.concurrency, opts.warmupMs, opts.durationMs, once);
close();
process.stdout.write(JSON.stringify(summary) + "\n");
process.exit(0);
