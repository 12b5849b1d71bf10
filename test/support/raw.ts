// Raw protocol requests (no client library), for tests that send what a client library would
// refuse to: compressed bombs, silent sockets, many streams.
import http from "node:http";
import http2 from "node:http2";
import { readFileSync, writeFileSync } from "node:fs";

/** A gRPC length-prefixed message; flag 1 = compressed. */
export function envelope(payload: Uint8Array, compressed: boolean): Buffer {
  const head = Buffer.alloc(5);
  head[0] = compressed ? 1 : 0;
  head.writeUInt32BE(payload.byteLength, 1);
  return Buffer.concat([head, payload]);
}

export interface RawAnswer {
  /** gRPC status code (number), or the Connect error code string, or "ok". */
  code: number | string;
  message: string;
}

/** gRPC over cleartext HTTP/2 to either port: one unary call with a raw (already enveloped) body. */
export function grpcCall(port: number, path: string, body: Buffer, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    let status: string | undefined;
    let message = "";
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) {
        status = String(h["grpc-status"]);
        message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      }
    };
    req.on("response", take);
    req.on("trailers", take);
    req.on("data", () => {});
    req.on("error", () => {});
    req.on("close", () => {
      session.close();
      if (status === undefined) reject(new Error(`no grpc-status (rst code ${req.rstCode})`));
      else resolve({ code: Number(status), message });
    });
    req.end(body);
  });
}

/** gRPC-Web over HTTP/1.1: one unary call; the status comes in the headers or the trailer frame. */
export function grpcWebCall(port: number, path: string, body: Buffer, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method: "POST", path, headers: { "content-type": "application/grpc-web+proto", ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          let status = res.headers["grpc-status"] as string | undefined;
          let message = decodeURIComponent(String(res.headers["grpc-message"] ?? ""));
          const all = Buffer.concat(chunks);
          for (let i = 0; status === undefined && i + 5 <= all.length; ) {
            const len = all.readUInt32BE(i + 1);
            if (all[i]! & 0x80) {
              const t = all.subarray(i + 5, i + 5 + len).toString();
              status = /grpc-status:\s*(\d+)/i.exec(t)?.[1];
              message = decodeURIComponent(/grpc-message:\s*(.*)/i.exec(t)?.[1]?.trim() ?? "");
            }
            i += 5 + len;
          }
          if (status === undefined) reject(new Error(`no grpc-status (HTTP ${res.statusCode})`));
          else resolve({ code: Number(status), message });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Connect unary over HTTP/1.1 (binary): the error's code string, or "ok". */
export function connectCall(port: number, path: string, body: Buffer, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method: "POST", path, headers: { "content-type": "application/proto", ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          if (res.statusCode === 200) return resolve({ code: "ok", message: "" });
          try {
            const e = JSON.parse(Buffer.concat(chunks).toString()) as { code: string; message?: string };
            resolve({ code: e.code, message: e.message ?? "" });
          } catch {
            reject(new Error(`HTTP ${res.statusCode} without a Connect error body`));
          }
        });
      },
    );
    // A server that answers before reading the whole body may close the connection under us.
    req.on("error", reject);
    req.end(body);
  });
}

/** Resident set size and its peak (VmRSS, VmHWM) of a process, in bytes. Linux only. */
export function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

/** Resets a process's peak RSS (VmHWM) to its current RSS, so that the next peak is this test's. */
export function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}
