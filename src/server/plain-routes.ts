// The HTTP port's endpoints that are not RPCs: OAuth (RFC 8414 metadata, the token endpoint, RFC
// 7662/7009), nginx auth_request, /metrics, and the transparency log's tiles (/checkpoint, /tile/...).
import type http from "node:http";
import type http2 from "node:http2";
import type { AppContext } from "./context.js";
import { oauthEndpoint } from "./oauth.js";
import { authorizeEndpoint, metadataEndpoint, metadataPaths, tokenEndpoint } from "./oauth-token.js";
import { authRequestEndpoint } from "./auth-request.js";
import { metricsEndpoint } from "./metrics.js";
import { tilesRoute } from "./tiles-http.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Handles the request and returns true when its path is one of these; false leaves it to Connect. */
export type PlainRoutes = (req: Req, res: Res) => boolean;

/** `issuer`: the OAuth issuer URL, known once the HTTP port listens. */
export function plainRoutes(ctx: AppContext, issuer: () => string): PlainRoutes {
  const table = new Map<string, (req: Req, res: Res) => Promise<void>>([
    ["/oauth2/token", tokenEndpoint(ctx, issuer)],
    ["/oauth2/authorize", authorizeEndpoint()],
    ["/oauth2/introspect", oauthEndpoint(ctx, "introspect")],
    ["/oauth2/revoke", oauthEndpoint(ctx, "revoke")],
    ["/auth", authRequestEndpoint(ctx)],
  ]);
  if (ctx.metrics) table.set("/metrics", metricsEndpoint(ctx.metrics, ctx.auth, ctx.config.metricsKey));
  const tiles = tilesRoute(ctx, ctx.logger);
  const metadata = metadataEndpoint(issuer);
  // Known once the port listens, which is before any request arrives.
  let wellKnown: string[] | undefined;
  return (req, res) => {
    const path = req.url?.split("?", 2)[0] ?? "";
    const h = table.get(path) ?? ((wellKnown ??= metadataPaths(issuer())).includes(path) ? metadata : undefined);
    if (!h) return tiles(req, res);
    h(req, res).catch((err: unknown) => {
      ctx.logger.error({ err, path: req.url }, "request failed");
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
    return true;
  };
}
