// RFC 7662 token introspection and RFC 7009 token revocation, at POST /oauth2/introspect and
// POST /oauth2/revoke on the HTTP port: form-encoded requests, JSON answers, RFC 6749 §5.2 errors.
// The client authenticates with an API key, as `Authorization: Bearer <key>` or as HTTP Basic
// with the key as the password (RFC 6749 §2.3.1; the user name, if given, must be the key's id).
import type http from "node:http";
import type http2 from "node:http2";
import type { Role } from "../store/database.js";
import { introspect } from "../domain/tokens.js";
import { revoke } from "../domain/revocation.js";
import { DomainError } from "../domain/errors.js";
import { API_KEY_PREFIX, isWellFormedSecret, isWellFormedToken } from "../domain/ids.js";
import { requireText } from "../domain/validate.js";
import type { AppContext } from "./context.js";
import { actorOf, boundAudiences, type Caller } from "./auth.js";
import { isDatabaseUnavailable } from "../store/open.js";
import { LimitRefusal, peerOf } from "./limits.js";
import { countDecision, verdictOf } from "./gateway.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Forms here carry a token and a hint, or a signed assertion and a few words: anything larger is not one of them. */
const MAX_FORM_BYTES = 16 * 1024;

export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
  }
}

const invalidRequest = (d: string) => new OAuthError(400, "invalid_request", d);

export function sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  // RFC 6749 §5.1: token data must not be cached.
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", pragma: "no-cache", ...headers });
  res.end(JSON.stringify(body));
}

function sendError(res: Res, e: OAuthError): void {
  sendJson(res, e.status, { error: e.error, error_description: e.message }, e.headers);
}

/** application/x-www-form-urlencoded form decoding; RFC 6749 §2.3.1 encodes Basic credentials the same way. */
function formDecode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, " "));
}

/**
 * The calling API key, from the headers alone (before the body is read). Failures are
 * invalid_client with 401 and a challenge for the scheme the client used (RFC 6749 §5.2).
 */
export async function oauthClient(
  ctx: AppContext,
  authorization: string | undefined,
  peer: string,
  roles: readonly Role[],
): Promise<Caller & { kind: "key" }> {
  const scheme = /^Basic /i.test(authorization ?? "") ? "Basic" : "Bearer";
  const challenge = { "www-authenticate": `${scheme} realm="agentid"` };
  const invalidClient = (d: string) => new OAuthError(401, "invalid_client", d, challenge);
  if (!authorization) throw invalidClient('client authentication required: send "Authorization: Bearer <api key>" or Basic with the key as password');
  let bearer = authorization;
  let clientId: string | undefined;
  if (scheme === "Basic") {
    const decoded = Buffer.from(authorization.slice(6).trim(), "base64").toString("utf8");
    const i = decoded.indexOf(":");
    if (i < 0) throw invalidClient("Basic credentials must be client_id:client_secret");
    try {
      clientId = formDecode(decoded.slice(0, i));
      bearer = `Bearer ${formDecode(decoded.slice(i + 1))}`;
    } catch {
      throw invalidClient("Basic credentials are not form-encoded");
    }
  }
  let caller: Caller | undefined;
  try {
    caller = await ctx.auth.authenticate(bearer, peer);
  } catch (err) {
    // Too many failed authentications from this address: say so, not "bad credentials".
    if (err instanceof DomainError && err.kind !== "resource_exhausted") throw invalidClient(err.message);
    throw err;
  }
  if (!caller || caller.kind !== "key") throw invalidClient("an API key is required");
  if (clientId && clientId !== caller.keyId) throw invalidClient("client_id does not match the API key's id");
  if (!roles.includes(caller.role)) {
    throw new OAuthError(403, "unauthorized_client", `role ${caller.role} may not use this endpoint (allowed: ${roles.join(", ")})`);
  }
  return caller;
}

/**
 * Reads a form body, bounded, after the client has authenticated (or been admitted). A parameter
 * may appear once (RFC 6749 §3.2) unless it is one of `repeatable` (RFC 8707's resource).
 */
export async function readForm(req: Req, repeatable: readonly string[] = []): Promise<URLSearchParams> {
  const type = String(req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded") {
    throw invalidRequest("the body must be application/x-www-form-urlencoded");
  }
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > MAX_FORM_BYTES) throw new OAuthError(413, "invalid_request", `the body must be at most ${MAX_FORM_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_FORM_BYTES) throw new OAuthError(413, "invalid_request", `the body must be at most ${MAX_FORM_BYTES} bytes`);
    chunks.push(c);
  }
  const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
  const seen = new Set<string>();
  for (const k of form.keys()) {
    if (seen.has(k) && !repeatable.includes(k)) throw invalidRequest(`parameter ${k} is repeated`);
    seen.add(k);
  }
  return form;
}

function requireToken(form: URLSearchParams): string {
  const token = form.get("token");
  if (!token) throw invalidRequest("parameter token is required");
  if (token.length > 4096) throw invalidRequest("parameter token must be at most 4096 characters");
  return token;
}

/** RFC 7662 §2.2: the RFC's names, plus agentid's own under an agentid_ prefix. */
async function introspectForm(ctx: AppContext, caller: Caller, form: URLSearchParams): Promise<Record<string, unknown>> {
  const token = requireToken(form);
  // token_type_hint is only a hint (§2.1): agentid has one kind of token, so it changes nothing.
  const answer = await introspect(ctx.tokenLookup, token, "", boundAudiences(caller));
  ctx.metrics?.introspection("oauth", answer);
  countDecision(ctx, caller, "introspect", answer.token ? { tokenId: answer.token.id } : token, verdictOf(answer), undefined);
  const t = answer.token;
  // An inactive token gets "active": false and nothing more (§2.2).
  if (!answer.active || !t) return { active: false };
  return {
    active: true,
    scope: t.scopes.join(" "),
    token_type: "Bearer",
    exp: Math.floor(t.expiresAt.getTime() / 1000),
    iat: Math.floor(t.issuedAt.getTime() / 1000),
    sub: t.agentId,
    aud: t.audiences,
    jti: t.id,
    agentid_agent_id: t.agentId,
    agentid_token_id: t.id,
    agentid_revision: answer.revision.toString(),
  };
}

/** Runs one of the domain's input checks, answering its refusal as the OAuth error `refuse` makes. */
export function oauthCheck<T>(refuse: (description: string) => OAuthError, check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof DomainError) throw refuse(err.message);
    throw err;
  }
}

/** agentid_reason, checked as the Revoke RPC checks its reason. */
function optionalReason(reason: string | undefined): string | undefined {
  return reason ? oauthCheck(invalidRequest, () => requireText("agentid_reason", reason, 512)) : undefined;
}

/** RFC 7009 §2.2: 200 whether or not the token was known or already revoked. */
async function revokeForm(ctx: AppContext, caller: Caller, form: URLSearchParams): Promise<void> {
  const token = requireToken(form);
  if (isWellFormedSecret(token, API_KEY_PREFIX)) {
    throw new OAuthError(400, "unsupported_token_type", "API keys are revoked with KeyService.RevokeApiKey (agentid key revoke), not here");
  }
  const reason = optionalReason(form.get("agentid_reason") ?? undefined);
  // A string that is no agentid token names nothing to revoke: §2.2 answers 200 for invalid tokens.
  if (!isWellFormedToken(token)) return;
  try {
    const r = await revoke(ctx.db, ctx.sequencer, { token }, reason ?? "revoked through /oauth2/revoke (RFC 7009)", actorOf(caller));
    ctx.logger.info({ target: "token", revision: r.revision.toString(), tokensRevoked: r.tokensRevoked.toString(), by: actorOf(caller) }, "revoked");
  } catch (err) {
    if (err instanceof DomainError && err.kind === "not_found") return;
    throw err;
  }
}

const INTROSPECTORS: readonly Role[] = ["admin", "issuer", "resource_server"];
const REVOKERS: readonly Role[] = ["admin", "issuer"];

/** POST /oauth2/introspect and POST /oauth2/revoke. */
export function oauthEndpoint(ctx: AppContext, which: "introspect" | "revoke") {
  return async (req: Req, res: Res): Promise<void> => {
    try {
      if (req.method !== "POST") throw new OAuthError(405, "invalid_request", "use POST", { allow: "POST" });
      const caller = await oauthClient(ctx, req.headers.authorization, peerOf(req), which === "introspect" ? INTROSPECTORS : REVOKERS);
      const form = await readForm(req);
      if (which === "introspect") {
        sendJson(res, 200, await introspectForm(ctx, caller, form));
      } else {
        await revokeForm(ctx, caller, form);
        res.writeHead(200, { "cache-control": "no-store" });
        res.end();
      }
    } catch (err) {
      answerError(ctx, res, err);
    }
  };
}

/** An OAuth endpoint's failure as RFC 6749 §5.2 JSON: its own error, 503 while the database is away, else 500. */
export function answerError(ctx: AppContext, res: Res, err: unknown): void {
  if (err instanceof OAuthError) return sendError(res, err);
  if (err instanceof LimitRefusal) {
    return sendError(res, new OAuthError(429, "temporarily_unavailable", err.message, { "retry-after": String(err.retryAfterSeconds) }));
  }
  if (isDatabaseUnavailable(err) || (err instanceof DomainError && err.kind === "unavailable")) {
    // RFC 7009 §2.2.1's code; introspection and the token endpoint use the same one.
    return sendError(res, new OAuthError(503, "temporarily_unavailable", "the database is unavailable; retry", { "retry-after": "1" }));
  }
  ctx.logger.error({ err }, "oauth endpoint failed");
  sendError(res, new OAuthError(500, "server_error", "internal error"));
}
