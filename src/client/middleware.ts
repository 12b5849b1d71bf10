import type { IncomingMessage, ServerResponse } from "node:http";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Verifier, VerifyResult } from "./verifier.js";

type Active = VerifyResult & { active: true };

/** The token of an `Authorization: Bearer <token>` header. */
export function bearer(header: string | null | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return m?.[1];
}

/** HTTP status and RFC 6750 error for an inactive answer (the gateway surfaces use it too). */
export function refusal(reason: Exclude<VerifyResult, Active>["reason"]): { status: number; error: string } {
  switch (reason) {
    case "scope_not_granted":
      return { status: 403, error: "insufficient_scope" };
    case "stale":
    case "unavailable":
      return { status: 503, error: "temporarily_unavailable" };
    case "malformed":
    case "unknown_token":
    case "expired":
    case "revoked":
    case "agent_revoked":
    case "audience_mismatch":
      return { status: 401, error: "invalid_token" };
    default: {
      const never: never = reason;
      return never;
    }
  }
}

/**
 * Express (or plain node:http) middleware: requires `Authorization: Bearer at_...`, verifies it,
 * and puts the answer on `req.agentid`. Refuses with 401, 403 (scope) or 503 (feed stale, server away).
 */
export function requireAgentToken(verifier: Verifier, opts: { scope?: string } = {}) {
  return (req: IncomingMessage & { agentid?: Active }, res: ServerResponse, next: (err?: unknown) => void): void => {
    const token = bearer(req.headers.authorization);
    if (!token) {
      res.writeHead(401, { "www-authenticate": "Bearer" }).end();
      return;
    }
    verifier.verify(token, opts).then((r) => {
      if (r.active) {
        req.agentid = r;
        next();
        return;
      }
      const { status, error } = refusal(r.reason);
      res
        .writeHead(status, {
          "www-authenticate": `Bearer error="${error}"${opts.scope ? `, scope="${opts.scope}"` : ""}`,
          "content-type": "application/json",
        })
        .end(JSON.stringify({ error, reason: r.reason }));
    }, next);
  };
}

/** Where the Connect interceptor leaves the verified token for handlers (`ctx.values.get(...)`). */
export const kAgentToken = createContextKey<Active | undefined>(undefined, { description: "agentid verified token" });

/**
 * A Connect interceptor for a resource server built on connect-node (pass it in `interceptors`):
 * every call needs a valid bearer token; the answer is in `ctx.values.get(kAgentToken)`.
 */
export function agentTokenInterceptor(verifier: Verifier, opts: { scope?: string } = {}): Interceptor {
  return (next) => async (req) => {
    const token = bearer(req.header.get("authorization"));
    if (!token) throw new ConnectError("bearer token required", Code.Unauthenticated);
    const r = await verifier.verify(token, opts);
    if (!r.active) {
      const code =
        r.reason === "scope_not_granted"
          ? Code.PermissionDenied
          : r.reason === "stale" || r.reason === "unavailable"
            ? Code.Unavailable
            : Code.Unauthenticated;
      throw new ConnectError(`token refused: ${r.reason}`, code);
    }
    req.contextValues.set(kAgentToken, r);
    return next(req);
  };
}
