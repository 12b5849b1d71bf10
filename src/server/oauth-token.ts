// agentid as an OAuth 2.1 authorization server for agents: RFC 8414 metadata, and POST
// /oauth2/token, where an agent gets an at_ token by signing a JWT with its registered key
// (client_credentials with private_key_jwt, RFC 7523 §2.2; or the jwt-bearer grant, §2.1). The
// same issuer as agentid's own Issue: the same allowance, the same lock against a kill, the same
// token.issued entry.
import { isIP } from "node:net";
import type http from "node:http";
import type http2 from "node:http2";
import type { AppContext } from "./context.js";
import { answerError, OAuthError, oauthCheck, readForm, sendJson } from "./oauth.js";
import { peerOf } from "./limits.js";
import { AssertionError, ASSERTION_ALGORITHMS, assertedAgent, verifyAssertion } from "../domain/assertion.js";
import { findAgent } from "../store/agents.js";
import { DomainError } from "../domain/errors.js";
import { beyondAllowance } from "../domain/tokens.js";
import { requireWords } from "../domain/validate.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

export const METADATA_PATH = "/.well-known/oauth-authorization-server";
const JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const JWT_BEARER_CLIENT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/** The issuer when AGENTID_ISSUER is unset: the address the HTTP port listens on. */
export function defaultIssuer(host: string, port: number): string {
  const wildcard = host === "0.0.0.0" || host === "::";
  const h = wildcard ? "127.0.0.1" : host;
  return `http://${isIP(h) === 6 ? `[${h}]` : h}:${port}`;
}

/** Where the metadata is served: at the root, and (RFC 8414 §3.1) with the issuer's path after it. */
export function metadataPaths(issuer: string): string[] {
  const path = new URL(issuer).pathname.replace(/\/$/, "");
  return path ? [METADATA_PATH, METADATA_PATH + path] : [METADATA_PATH];
}

/** GET /.well-known/oauth-authorization-server: public, as RFC 8414 intends. */
export function metadataEndpoint(issuer: () => string) {
  return async (req: Req, res: Res): Promise<void> => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" });
      res.end();
      return;
    }
    const base = issuer();
    const body = JSON.stringify({
      issuer: base,
      // Required by RFC 8414 and by MCP clients' parsers; it answers every request with an error,
      // as agentid has no interactive flow (response_types_supported is empty).
      authorization_endpoint: `${base}/oauth2/authorize`,
      token_endpoint: `${base}/oauth2/token`,
      introspection_endpoint: `${base}/oauth2/introspect`,
      revocation_endpoint: `${base}/oauth2/revoke`,
      response_types_supported: [],
      grant_types_supported: ["client_credentials", JWT_BEARER_GRANT],
      token_endpoint_auth_methods_supported: ["private_key_jwt"],
      token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS,
      // An API key, as the password of HTTP Basic (or as a bearer credential).
      introspection_endpoint_auth_methods_supported: ["client_secret_basic"],
      revocation_endpoint_auth_methods_supported: ["client_secret_basic"],
    });
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      "cache-control": "public, max-age=300",
      "access-control-allow-origin": "*",
    });
    if (req.method === "HEAD") res.end();
    else res.end(body);
  };
}

/** /oauth2/authorize: named in the metadata, and says why there is nothing there. */
export function authorizeEndpoint() {
  return async (_req: Req, res: Res): Promise<void> =>
    sendJson(res, 400, {
      error: "unsupported_response_type",
      error_description: "agentid has no interactive authorization: agents get tokens at /oauth2/token (client_credentials with private_key_jwt, or the jwt-bearer grant)",
    });
}

/**
 * RFC 6749 §5.2: invalid_client is a 401 with a challenge, whose parameters carry the reason too,
 * in the characters RFC 6749 allows an error_description (a header must not break on a header
 * name an assertion made up, which jose's message may quote).
 */
function invalidClient(description: string): OAuthError {
  const safe = description.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, "?");
  return new OAuthError(401, "invalid_client", description, {
    "www-authenticate": `Bearer realm="agentid", error="invalid_client", error_description="${safe}"`,
  });
}

const oauthError = (error: string) => (description: string) => new OAuthError(400, error, description);
const invalidRequest = oauthError("invalid_request");
const invalidGrant = oauthError("invalid_grant");
const invalidScope = oauthError("invalid_scope");
const invalidTarget = oauthError("invalid_target");

/** The assertion the request authenticates with, and how a bad one is answered (RFC 7521 §4.1.1, §4.2.1). */
function assertionOf(form: URLSearchParams): { grant: string; assertion: string; refuse: (d: string) => OAuthError } {
  const grant = form.get("grant_type");
  if (!grant) throw invalidRequest("parameter grant_type is required");
  if (grant === "client_credentials") {
    const type = form.get("client_assertion_type");
    const assertion = form.get("client_assertion");
    if (!type || !assertion) {
      throw invalidClient(`client authentication required: private_key_jwt (client_assertion_type=${JWT_BEARER_CLIENT} and client_assertion, a JWT signed with the agent's key)`);
    }
    if (type !== JWT_BEARER_CLIENT) throw invalidClient(`client_assertion_type must be ${JWT_BEARER_CLIENT}`);
    return { grant, assertion, refuse: invalidClient };
  }
  if (grant === JWT_BEARER_GRANT) {
    const assertion = form.get("assertion");
    if (!assertion) throw invalidRequest("parameter assertion is required for the jwt-bearer grant");
    if (form.has("client_assertion")) throw invalidRequest("the jwt-bearer grant's assertion authenticates the agent: send no client_assertion with it");
    return { grant, assertion, refuse: invalidGrant };
  }
  throw new OAuthError(400, "unsupported_grant_type", `grant_type must be client_credentials or ${JWT_BEARER_GRANT}`);
}

/** A token's parameters: what they become, how a bad one is answered, and Issue's bounds on them. */
const PARAMETERS = {
  scope: { what: "scopes", refuse: invalidScope, maxLen: 128, maxCount: 64 },
  resource: { what: "audiences", refuse: invalidTarget, maxLen: 256, maxCount: 16 },
} as const;

/** The asked-for words, checked and within the allowed ones; none asked for: all the allowed ones. */
function granted(parameter: keyof typeof PARAMETERS, asked: string[], allowed: string[], agentId: string): string[] {
  if (asked.length === 0) return allowed;
  const p = PARAMETERS[parameter];
  const words = oauthCheck(p.refuse, () => requireWords(parameter, asked, p.maxLen, p.maxCount));
  const beyond = beyondAllowance(p.what, words, allowed, agentId);
  if (beyond) throw p.refuse(beyond);
  return words;
}

/**
 * The agent a token request proves to be, with its grant and form. The request carries its own
 * credentials, so before it is read the address's allowances are taken: one call without an API
 * key, and one failed authentication, given back unless the assertion fails.
 */
async function authenticate(ctx: AppContext, req: Req, issuer: string): Promise<{ agentId: string; grant: string; form: URLSearchParams }> {
  const peer = peerOf(req);
  ctx.auth.admitAnonymous(peer, "/oauth2/token");
  const refund = ctx.auth.chargeAttempt(peer);
  let failed = false;
  try {
    const form = await readForm(req, ["resource"]);
    const { grant, assertion, refuse } = assertionOf(form);
    try {
      const agentId = assertedAgent(assertion, form.get("client_id") ?? undefined);
      await verifyAssertion(ctx.db, assertion, agentId, { audiences: [issuer, `${issuer}/oauth2/token`], maxSkewMs: ctx.config.proofMaxSkewMs });
      return { agentId, grant, form };
    } catch (err) {
      if (!(err instanceof AssertionError)) throw err;
      failed = true;
      throw refuse(err.message);
    }
  } finally {
    if (!failed) refund();
  }
}

/** POST /oauth2/token. */
export function tokenEndpoint(ctx: AppContext, issuer: () => string) {
  const ttlMs = ctx.config.tokenDefaultTtlMs;
  return async (req: Req, res: Res): Promise<void> => {
    try {
      if (req.method !== "POST") throw new OAuthError(405, "invalid_request", "use POST", { allow: "POST" });
      if (req.headers.authorization) {
        throw invalidClient("agentid's token endpoint authenticates agents by private_key_jwt (client_assertion), not by an Authorization header");
      }
      const { agentId, grant, form } = await authenticate(ctx, req, issuer());
      const agent = await findAgent(ctx.db, agentId);
      if (!agent || agent.status === "REVOKED") throw invalidGrant(`agent ${agentId} is revoked; register a new agent`);
      const scopes = granted("scope", form.get("scope")?.split(" ").filter(Boolean) ?? [], agent.allowedScopes, agentId);
      const audiences = granted("resource", form.getAll("resource"), agent.allowedAudiences, agentId);
      let issued;
      try {
        issued = await ctx.issuer.issue({ agentId, scopes, audiences, ttlMs, grant }, `agent:${agentId}`);
      } catch (err) {
        // The agent was killed, or its allowance narrowed, since it was read above.
        if (err instanceof DomainError && (err.kind === "failed_precondition" || err.kind === "not_found")) throw invalidGrant(err.message);
        if (err instanceof DomainError && err.kind === "permission_denied") throw invalidScope(err.message);
        throw err;
      }
      ctx.logger.debug({ tokenId: issued.record.id, agentId, grant }, "token issued at /oauth2/token");
      ctx.metrics?.issuance("oauth");
      sendJson(res, 200, { access_token: issued.token, token_type: "Bearer", expires_in: Math.floor(ttlMs / 1000), scope: scopes.join(" ") });
    } catch (err) {
      answerError(ctx, res, err);
    }
  };
}
