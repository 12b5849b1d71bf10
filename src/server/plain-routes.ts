// The HTTP port's endpoints that are not RPCs: RFC 7662/7009, nginx auth_request, /metrics, and
// the transparency log's tiles (/checkpoint, /tile/...).
import type http from "node:http";
import http2 from "node:http2";
import type { AppContext } from "./context.js";
import { oauthEndpoint } from "./oauth.js";
import { authRequestEndpoint } from "./auth-request.js";
import { metricsEndpoint } from "./metrics.js";
import { isTilesPath, tilesRoute } from "./tiles-http.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Handles the request and returns true when its path is one of these; false leaves it to Connect. */
export type PlainRoutes = (req: Req, res: Res) => boolean;

/**
 * A request answered before its body was read (every refusal is: credentials, method and size
 * are checked first) has the rest of its body refused too, not drained: HTTP/1.1 answers with
 * `connection: close` and closes, as the RPC routes do; HTTP/2 resets the stream with NO_ERROR
 * after the answer (RFC 9113 §8.1). A body the handler read to its end keeps the connection.
 */
function closeUnread(req: Req, res: Res): void {
  if (req.httpVersionMajor === 1) {
    const r = res as http.ServerResponse;
    const keepAlive = r.shouldKeepAlive;
    if (req.complete) return;
    r.shouldKeepAlive = false;
    req.once("end", () => (r.shouldKeepAlive = keepAlive));
    return;
  }
  res.once("finish", () => {
    if (!req.complete) (res as http2.Http2ServerResponse).stream.close(http2.constants.NGHTTP2_NO_ERROR);
  });
}

export function plainRoutes(ctx: AppContext): PlainRoutes {
  const table = new Map<string, (req: Req, res: Res) => Promise<void>>([
    ["/oauth2/introspect", oauthEndpoint(ctx, "introspect")],
    ["/oauth2/revoke", oauthEndpoint(ctx, "revoke")],
    ["/auth", authRequestEndpoint(ctx)],
  ]);
  if (ctx.metrics) table.set("/metrics", metricsEndpoint(ctx.metrics, ctx.auth, ctx.config.metricsKey));
  const tiles = tilesRoute(ctx, ctx.logger);
  return (req, res) => {
    const path = req.url?.split("?", 2)[0] ?? "";
    const h = table.get(path);
    if (!h && !isTilesPath(path)) return false;
    closeUnread(req, res);
    if (!h) return tiles(req, res);
    h(req, res).catch((err: unknown) => {
      ctx.logger.error({ err, path: req.url }, "request failed");
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
    return true;
  };
}
