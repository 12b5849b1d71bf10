// nginx auth_request: GET /auth on the HTTP port. nginx forwards the agent's token in
// `Authorization`, authenticates itself as a resource server with `X-Agentid-Api-Key`, and may
// name a required scope in `X-Agentid-Scope`. 2xx with x-agentid-* headers allows the request
// (nginx copies them to the upstream with auth_request_set); 401 or 403 refuses it.
// Answers come from live state, as Introspect: a revocation takes effect on the next request.
import type http from "node:http";
import type http2 from "node:http2";
import { bearer } from "../client/middleware.js";
import { introspect } from "../domain/tokens.js";
import { DomainError } from "../domain/errors.js";
import type { AppContext } from "./context.js";
import { boundAudiences } from "./auth.js";
import { countDecision, decide, narrow, NO_TOKEN, requiredScope, verdictOf, type Decision } from "./gateway.js";
import { isDatabaseUnavailable } from "../store/open.js";
import { peerOf } from "./limits.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

function send(res: Res, d: Decision): void {
  if (d.allow) {
    res.writeHead(200, { ...d.headers, "cache-control": "no-store" });
    res.end();
    return;
  }
  res.writeHead(d.status, { ...d.headers, "cache-control": "no-store" });
  res.end(d.body);
}

function gatewayRefusal(status: 401 | 403, description: string): Decision {
  return {
    allow: false,
    status,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ error: "invalid_gateway_key", error_description: description }),
  };
}

export function authRequestEndpoint(ctx: AppContext) {
  return async (req: Req, res: Res): Promise<void> => {
    try {
      // The gateway first: nothing is spent on a request from an unknown caller.
      const key = req.headers["x-agentid-api-key"];
      if (typeof key !== "string" || key === "") {
        return send(res, gatewayRefusal(401, "the gateway must send its resource_server API key in X-Agentid-Api-Key"));
      }
      let caller;
      try {
        caller = await ctx.auth.authenticate(`Bearer ${key}`, peerOf(req));
      } catch (err) {
        if (err instanceof DomainError) return send(res, gatewayRefusal(401, `X-Agentid-Api-Key: ${err.message}`));
        throw err;
      }
      if (caller?.kind !== "key" || (caller.role !== "resource_server" && caller.role !== "admin")) {
        return send(res, gatewayRefusal(403, "X-Agentid-Api-Key must be a resource_server (or admin) key"));
      }
      const scopeHeader = req.headers["x-agentid-scope"];
      const scope = requiredScope("X-Agentid-Scope", typeof scopeHeader === "string" ? scopeHeader : undefined);
      const token = bearer(req.headers.authorization);
      if (token === undefined) return send(res, NO_TOKEN);
      if (token.length > 4096) return send(res, decide({ active: false, reason: "malformed" }, scope));
      const answer = await introspect(ctx.tokenLookup, token, "", boundAudiences(caller));
      const verdict = narrow(verdictOf(answer), undefined, scope);
      ctx.metrics?.introspection("auth_request", verdict);
      countDecision(ctx, caller, "gateway", answer.token ? { tokenId: answer.token.id } : token, verdict, scope);
      send(res, decide(verdict, scope));
    } catch (err) {
      if (err instanceof DomainError && err.kind === "invalid_argument") {
        // A misconfigured gateway (a bad X-Agentid-Scope): refused, and said why.
        return send(res, { allow: false, status: 403, headers: { "content-type": "application/json" }, body: JSON.stringify({ error: "invalid_request", error_description: err.message }) });
      }
      if (isDatabaseUnavailable(err)) {
        res.writeHead(503, { "retry-after": "1", "content-type": "application/json" });
        res.end(JSON.stringify({ error: "temporarily_unavailable" }));
        return;
      }
      ctx.logger.error({ err }, "auth_request failed");
      res.writeHead(500);
      res.end();
    }
  };
}
