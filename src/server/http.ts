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
import type { CallContext } from "./call.js";
import { toConnectError } from "./errors.js";
import type { Handler, ServiceRoutes } from "./services.js";
import type { PlainRoutes } from "./plain-routes.js";
import { withConsole } from "./console-static.js";
import { isPreEncoded } from "./encoded.js";

/** The client's socket, as "address:port", for per-connection limits. */
const kPeer = createContextKey("");

function connectCall(hctx: HandlerContext): CallContext {
  return {
    onCancel(listener) {
      if (hctx.signal.aborted) {
        queueMicrotask(listener);
        return () => {};
      }
      hctx.signal.addEventListener("abort", listener, { once: true });
      return () => hctx.signal.removeEventListener("abort", listener);
    },
    header: (name) => hctx.requestHeader.get(name) ?? undefined,
    peer: hctx.values.get(kPeer),
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

// connect-node answers a request body that does not decode with INTERNAL; that is bad input, not a
// bug, so it is rewritten to INVALID_ARGUMENT (Connect unary JSON errors and gRPC trailers).
const PARSE_ERROR = /^\[internal\] parse (binary|JSON)|^parse (binary|JSON)/;

async function mapParseError(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const grpcMessage = res.trailer?.get("grpc-message") ?? res.header?.get("grpc-message");
  if ((res.trailer?.get("grpc-status") ?? res.header?.get("grpc-status")) === String(Code.Internal) && grpcMessage) {
    if (PARSE_ERROR.test(decodeURIComponent(grpcMessage))) {
      (res.trailer?.has("grpc-status") ? res.trailer : res.header)!.set("grpc-status", String(Code.InvalidArgument));
    }
    return res;
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

async function* single(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** connect-node's adapter, with parse errors mapped (see above). */
function nodeHandler(services: ServiceRoutes[], logger: Logger, plain?: PlainRoutes) {
  const router = createConnectRouter({ acceptCompression: [compressionGzip, compressionBrotli] });
  for (const r of services) router.service(r.service, connectImpl(r, logger));
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  return (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    if (plain?.(req, res)) return;
    const h = paths.get(req.url?.split("?", 2)[0] ?? "");
    if (!h) {
      res.writeHead(404);
      res.end();
      return;
    }
    const peer = createContextValues().set(kPeer, `${req.socket.remoteAddress}:${req.socket.remotePort}`);
    h(universalRequestFromNodeRequest(req, res, undefined, peer))
      .then(async (uRes) => universalResponseToNodeResponse(await mapParseError(uRes), res))
      .catch((err: unknown) => {
        if (ConnectError.from(err).code !== Code.Aborted) logger.warn({ err, rpc: h.method.name }, "response failed");
      });
  };
}

export interface HttpServer {
  server: net.Server;
  close(): Promise<void>;
}

/**
 * Connect, gRPC-Web and gRPC on one port, over HTTP/1.1 and cleartext HTTP/2 (prior knowledge):
 * the first bytes of a connection tell which server gets it.
 */
export function createHttpServer(services: ServiceRoutes[], logger: Logger, plain?: PlainRoutes): HttpServer {
  const handler = withConsole(nodeHandler(services, logger, plain));
  const h1 = http.createServer(handler);
  const h2 = http2.createServer(handler);
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
    socket.once("data", (first) => {
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

