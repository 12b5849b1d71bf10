import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { onAbort, type Admitted, type CallContext } from "./call.js";
import { toConnectError } from "./errors.js";
import type { Admit } from "./access.js";
import type { AppContext } from "./context.js";
import type { Handler, ServiceRoutes } from "./services.js";
import type { PlainRoutes } from "./plain-routes.js";
import { withConsole } from "./console-static.js";
import { isPreEncoded } from "./encoded.js";
import { peerOf } from "./limits.js";

/** The client's socket, as "address:port", for per-connection limits. */
const kPeer = createContextKey("");
/** Who admission let in, once it has (see rpcHandler). */
const kAdmitted = createContextKey<{ admitted?: Admitted }>({});

function connectCall(hctx: HandlerContext): CallContext {
  return {
    onCancel: (listener) => onAbort(hctx.signal, listener),
    header: (name) => hctx.requestHeader.get(name) ?? undefined,
    peer: hctx.values.get(kPeer),
    admitted: hctx.values.get(kAdmitted).admitted,
    principal: "anonymous",
  };
}

function connectImpl(r: ServiceRoutes, logger: Logger): Partial<ServiceImpl<typeof r.service>> {
  const impl: Record<string, unknown> = {};
  for (const m of r.service.methods) {
    const h: Handler | undefined = r.handlers[m.localName];
    if (!h) continue;
    impl[m.localName] =
      m.methodKind === "server_streaming"
        ? async function* (req: never, hctx: HandlerContext) {
            try {
              // Pre-encoded frames are shared by many streams; Connect encodes the message itself.
              for await (const r of h(req, connectCall(hctx)) as AsyncIterable<unknown>) yield isPreEncoded(r) ? r.message : r;
            } catch (err) {
              throw toConnectError(err, logger);
            }
          }
        : async (req: never, hctx: HandlerContext) => {
            try {
              return await h(req, connectCall(hctx));
            } catch (err) {
              throw toConnectError(err, logger);
            }
          };
  }
  return impl as Partial<ServiceImpl<typeof r.service>>;
}

// connect-node answers a request body that does not decode (or decompress) with INTERNAL; that is
// bad input, not a bug, so it is rewritten to INVALID_ARGUMENT: in Connect unary JSON errors, gRPC
// trailers, and the error frames that gRPC-Web and Connect streaming put in the body.
const PARSE_ERROR = /^(\[internal\] )?(parse (binary|JSON)|decompression failed|received compressed envelope|protocol error: promised \d+ bytes)/;

async function mapParseError(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const grpcMessage = res.trailer?.get("grpc-message") ?? res.header?.get("grpc-message");
  if ((res.trailer?.get("grpc-status") ?? res.header?.get("grpc-status")) === String(Code.Internal) && grpcMessage) {
    if (PARSE_ERROR.test(decodeURIComponent(grpcMessage))) {
      (res.trailer?.has("grpc-status") ? res.trailer : res.header)!.set("grpc-status", String(Code.InvalidArgument));
    }
    return res;
  }
  const contentType = res.header?.get("content-type") ?? "";
  if (res.status === 200 && res.body && (contentType.startsWith("application/grpc-web") || contentType.startsWith("application/connect+"))) {
    return { ...res, body: mapErrorFrame(res.body, contentType.startsWith("application/grpc-web")) };
  }
  if (res.status !== 500 || !res.body || res.header?.has("content-encoding")) return res;
  // Error bodies are one small JSON chunk.
  const chunks: Uint8Array[] = [];
  for await (const c of res.body) chunks.push(c);
  const bytes = Buffer.concat(chunks);
  let body: { code?: string; message?: string } = {};
  try {
    body = JSON.parse(bytes.toString()) as typeof body;
  } catch {
    // Not a Connect JSON error; passed on as it was.
  }
  if (body.code === "internal" && PARSE_ERROR.test(body.message ?? "")) {
    const fixed = Buffer.from(JSON.stringify({ code: "invalid_argument", message: `request body: ${body.message}` }));
    res.header?.set("content-length", String(fixed.byteLength));
    return { ...res, status: 400, body: single(fixed) };
  }
  return { ...res, body: single(bytes) };
}

/**
 * A request that fails to decode is answered before any message, so its error frame (gRPC-Web
 * trailers, flag 0x80; Connect end-of-stream, flag 0x02) comes first, whole, in the first chunk.
 * Only that chunk is looked at; a stream's messages pass untouched.
 */
async function* mapErrorFrame(body: AsyncIterable<Uint8Array>, grpcWeb: boolean): AsyncIterable<Uint8Array> {
  let first = true;
  for await (const chunk of body) {
    if (first) {
      first = false;
      const c = Buffer.from(chunk);
      const flag = grpcWeb ? 0x80 : 0x02;
      if (c.length >= 5 && c[0]! & flag && c.readUInt32BE(1) === c.length - 5) {
        const text = c.subarray(5).toString();
        if (grpcWeb) {
          const message = /grpc-message: ?([^\r\n]*)/i.exec(text)?.[1] ?? "";
          if (/grpc-status: ?13\b/i.test(text) && PARSE_ERROR.test(decodeURIComponent(message))) {
            yield frame(c[0]!, Buffer.from(text.replace(/grpc-status: ?13\b/i, `grpc-status: ${Code.InvalidArgument}`)));
            continue;
          }
        } else {
          try {
            const end = JSON.parse(text) as { error?: { code?: string; message?: string } };
            if (end.error?.code === "internal" && PARSE_ERROR.test(end.error.message ?? "")) {
              yield frame(c[0]!, Buffer.from(JSON.stringify({ ...end, error: { ...end.error, code: "invalid_argument" } })));
              continue;
            }
          } catch {
            // Not JSON: passed on as it was.
          }
        }
      }
    }
    yield chunk;
  }
}

function frame(flags: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header[0] = flags;
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}

async function* single(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** A request header from either server's request object. */
function headerOf(req: NodeRequest): (name: string) => string | undefined {
  return (name) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
}

/**
 * The body, held back until admission (credentials and role, from the headers) has passed. A
 * refused request is answered by connect-node in its own protocol's error format (the rejection is
 * a ConnectError), and its body is never read.
 */
async function* admitted(gate: Promise<void>, body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  await gate;
  yield* body;
}

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/**
 * One surface of the HTTP port: answers the requests it owns and returns true, or returns false
 * to pass the request on. createHttpServer tries them in order.
 */
export type PathHandler = (req: NodeRequest, res: NodeResponse) => boolean;

/** connect-node's adapter for every RPC, with bounded bodies, admission before the body, and parse errors mapped (see above). */
function rpcHandler(services: ServiceRoutes[], logger: Logger, maxRequestBytes: number): PathHandler {
  // readMaxBytes bounds a message on the wire and after decompression (connect-node passes it to zlib).
  const router = createConnectRouter({ acceptCompression: [compressionGzip, compressionBrotli], readMaxBytes: maxRequestBytes });
  for (const r of services) router.service(r.service, connectImpl(r, logger));
  const admits = new Map<string, Admit>();
  for (const r of services) {
    for (const m of r.service.methods) {
      const a = r.admit?.[m.localName];
      if (a) admits.set(`/${r.service.typeName}/${m.name}`, a);
    }
  }
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  return (req, res) => {
    const path = req.url?.split("?", 2)[0] ?? "";
    const h = paths.get(path);
    if (!h) return false;
    const peer = peerOf(req);
    const admit = admits.get(path);
    const admission: { admitted?: Admitted } = {};
    const gate = admit
      ? admit(headerOf(req), peer).then(
          (a) => void (admission.admitted = a),
          (err: unknown) => Promise.reject(toConnectError(err, logger)),
        )
      : Promise.resolve();
    // A refused request's body is not read (see closeUnread).
    gate.catch(() => closeUnread(req, res));
    const uReq = universalRequestFromNodeRequest(req, res, undefined, createContextValues().set(kPeer, peer).set(kAdmitted, admission));
    if (Symbol.asyncIterator in Object(uReq.body)) uReq.body = admitted(gate, uReq.body as AsyncIterable<Uint8Array>);
    h(uReq)
      .then(async (uRes) => universalResponseToNodeResponse(await mapParseError(uRes), res))
      .catch((err: unknown) => {
        if (ConnectError.from(err).code !== Code.Aborted) logger.warn({ err, rpc: h.method.name }, "response failed");
      });
    return true;
  };
}

/**
 * Up to this much of a body answered before it was read is read and dropped on HTTP/1.1, declared
 * or chunked (as Connect clients send unary calls): it costs less than a new connection, and a
 * client still writing a small request gets its answer rather than a broken pipe.
 */
const SMALL_BODY = 64 * 1024;

/**
 * A request answered before its body was read (every refusal is: credentials, method and size
 * come first) has the rest of a larger body refused, not drained: HTTP/1.1 answers with
 * `connection: close` and closes; HTTP/2 resets the stream with NO_ERROR after the answer (RFC
 * 9113 §8.1). A body the handler read to its end keeps the connection.
 */
function closeUnread(req: NodeRequest, res: NodeResponse): void {
  if (req.httpVersionMajor === 1) {
    const r = res as http.ServerResponse;
    if (Number(req.headers["content-length"]) > SMALL_BODY) {
      const keepAlive = r.shouldKeepAlive;
      r.shouldKeepAlive = false;
      req.once("end", () => (r.shouldKeepAlive = keepAlive));
      return;
    }
    // A small declared body: Node reads and drops it once the answer is sent. A chunked one is
    // read here, counted, and closed on past SMALL_BODY (Node would drain it without bound).
    if (req.headers["transfer-encoding"] === undefined) return;
    let read = 0;
    req.on("data", (chunk: Buffer) => {
      read += chunk.length;
      if (read <= SMALL_BODY) return;
      req.pause();
      r.shouldKeepAlive = false;
      if (r.writableFinished) req.socket.destroy();
      else r.once("finish", () => req.socket.destroy());
    });
    return;
  }
  res.once("finish", () => {
    if (!req.complete) (res as http2.Http2ServerResponse).stream.close(http2.constants.NGHTTP2_NO_ERROR);
  });
}

export interface HttpServer {
  server: net.Server;
  close(): Promise<void>;
}

/**
 * Connect, gRPC-Web and gRPC on one port, over HTTP/1.1 and cleartext HTTP/2 (prior knowledge):
 * the first bytes of a connection tell which server gets it. A connection that sends nothing within
 * the handshake timeout, or goes quiet for the idle timeout, is closed (an open watch stream is
 * never quiet: it carries a Progress message every second).
 */
export function createHttpServer(ctx: AppContext, services: ServiceRoutes[], plain?: PlainRoutes): HttpServer {
  const { logger, config } = ctx;
  // The RPCs own their paths (/agentid.v1.X/Y and the like) and their bodies; every other
  // request goes to the console's static files (GET /console/...), the plain routes, or 404,
  // none of which reads a body it has not admitted.
  const rpc = rpcHandler(services, logger, config.maxRequestBytes);
  const rest = withConsole((req: NodeRequest, res: NodeResponse) => {
    if (plain?.(req, res)) return;
    res.writeHead(404);
    res.end();
  });
  const handler = (req: NodeRequest, res: NodeResponse) => {
    if (rpc(req, res)) return;
    closeUnread(req, res);
    rest(req, res);
  };
  const h1 = http.createServer({ connectionsCheckingInterval: Math.min(config.handshakeTimeoutMs, 30_000) }, handler);
  // Whole headers within the handshake timeout; then silence for idleTimeoutMs closes the socket.
  h1.headersTimeout = config.handshakeTimeoutMs;
  h1.requestTimeout = Math.max(config.handshakeTimeoutMs, h1.requestTimeout);
  h1.timeout = config.idleTimeoutMs;
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: config.http2MaxConcurrentStreams } }, handler);
  // A session with no frames for idleTimeoutMs is destroyed.
  h2.setTimeout(config.idleTimeoutMs);
  const sockets = new Set<net.Socket>();
  const h2Sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    h2Sessions.add(s);
    s.on("close", () => h2Sessions.delete(s));
  });
  const preface = Buffer.from("PRI * HTTP/2.0");
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const silent = () => socket.destroy();
    socket.setTimeout(config.handshakeTimeoutMs, silent);
    socket.once("data", (first) => {
      // From here the HTTP/1.1 or HTTP/2 server's own timeouts apply.
      socket.setTimeout(0);
      socket.off("timeout", silent);
      socket.pause();
      socket.unshift(first);
      // The HTTP/2 session takes the buffered bytes and reads the socket's handle itself;
      // resuming the JS stream would steal its data. HTTP/1.1 reads through the stream.
      if (first.subarray(0, preface.length).equals(preface)) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });
  return {
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        h1.closeIdleConnections();
        for (const s of h2Sessions) s.close();
        // Streams still open after a grace period are cut.
        setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 2000).unref();
      }),
  };
}

