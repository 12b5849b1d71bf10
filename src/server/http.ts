import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import {
  createContextKey,
  createContextValues,
  type ConnectRouter,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import type { CallContext } from "./call.js";
import { toConnectError } from "./errors.js";
import type { Handler, ServiceRoutes } from "./services.js";

/** The client's socket, as "address:port", for per-connection limits. */
const kPeer = createContextKey("");

function connectCall(hctx: HandlerContext): CallContext {
  return {
    signal: hctx.signal,
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
              yield* h(req, connectCall(hctx)) as AsyncIterable<unknown>;
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

export interface HttpServer {
  server: net.Server;
  close(): Promise<void>;
}

/**
 * Connect, gRPC-Web and gRPC on one port, over HTTP/1.1 and cleartext HTTP/2 (prior knowledge):
 * the first bytes of a connection tell which server gets it.
 */
export function createHttpServer(services: ServiceRoutes[], logger: Logger): HttpServer {
  const handler = connectNodeAdapter({
    contextValues: (req) => createContextValues().set(kPeer, `${req.socket.remoteAddress}:${req.socket.remotePort}`),
    routes: (router: ConnectRouter) => {
      for (const r of services) router.service(r.service, connectImpl(r, logger));
    },
  });
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
      const isH2 = first.subarray(0, preface.length).equals(preface);
      (isH2 ? h2 : h1).emit("connection", socket);
      socket.resume();
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

