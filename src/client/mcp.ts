// agentid for MCP servers built on the MCP TypeScript SDK (1.x): a token verifier that drops into
// the SDK's requireBearerAuth, the RFC 9728 metadata that names agentid as the authorization
// server, and a watch on each transport so that a revocation ends the tool calls it was serving
// at once (the client's call fails, the handler's signal fires, nothing more is delivered).
// Imported as `agentid/mcp`; it needs @modelcontextprotocol/sdk, the server's own copy.
import type { IncomingMessage, ServerResponse } from "node:http";
import { InvalidTokenError, ServerError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type { OAuthTokenVerifier } from "@modelcontextprotocol/sdk/server/auth/provider.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { isJSONRPCErrorResponse, isJSONRPCRequest, isJSONRPCResultResponse, type JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { createVerifier, type Revocation, type Verifier, type VerifierOptions } from "./verifier.js";

/** JSON-RPC error codes (the implementation-defined server range) of the guard's refusals. */
export const MCP_TOKEN_REVOKED = -32040;
export const MCP_INSUFFICIENT_SCOPE = -32043;

export interface McpGuardOptions extends Omit<VerifierOptions, "audience"> {
  /**
   * The MCP server's canonical URL, e.g. "https://mcp.example.com/mcp": the RFC 8707 resource
   * agents ask tokens for, and the audience every token must list.
   */
  resource: string;
  /** agentid's issuer (its HTTP base URL), named as the authorization server in the metadata. */
  issuer: string;
  /** Scopes that tools need (tool name to scope); a call to a tool not listed needs none. */
  toolScopes?: Record<string, string>;
  /** A name for people, in the protected resource metadata. */
  resourceName?: string;
}

/** RFC 9728 protected resource metadata, as the guard serves it. */
export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  bearer_methods_supported: string[];
  resource_name?: string;
}

export interface McpGuard extends OAuthTokenVerifier {
  /** The RFC 9728 document's URL: pass it to requireBearerAuth as `resourceMetadataUrl`. */
  readonly resourceMetadataUrl: string;
  readonly metadata: ProtectedResourceMetadata;
  /**
   * Serves the metadata at its well-known path (GET, HEAD, CORS preflight); other requests go to
   * `next` (404 without one). Express middleware, or a plain node:http handler.
   */
  metadataHandler(req: IncomingMessage, res: ServerResponse, next?: () => void): void;
  /**
   * `server.connect(transport)`, watched: requests must come through requireBearerAuth with this
   * guard; a stateful session belongs to the agent that opened it; a revocation of any token used
   * on the transport, or of its agent, ends every request in flight on it and closes it.
   */
  connect(server: { connect(transport: Transport): Promise<void> }, transport: Transport): Promise<void>;
  readonly verifier: Verifier;
  /** Resolves once the feed has caught up (strict mode refuses every token until then). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

type Id = string | number;
interface Who {
  tokenId: string;
  agentId: string;
}

/** One watched transport: who it serves and what it is serving now. */
interface Watch {
  transport: Transport;
  /** The transport's own send (the watch's wrapper drops everything once it has ended). */
  send: Transport["send"];
  /** The protocol's message handler, behind the watch's. */
  deliver: NonNullable<Transport["onmessage"]>;
  agentId: string | undefined;
  tokens: Set<string>;
  /** Requests delivered and not yet answered. */
  inflight: Set<Id>;
  /** Messages wait here for their tool's scope check, so that they are delivered in order. */
  queue: Promise<void>;
  ended: boolean;
}

/** Tool names a usage report can carry (MCP's own rule for tool names, spaces never). */
const TOOL_NAME = /^[A-Za-z0-9_.\-/]{1,128}$/;

/** Revocations remembered to close the gap between verifying a request and watching it. */
const RECENT_REVOCATIONS = 4096;

/** The RFC 9728 URL for a resource: the well-known prefix inserted before its path. */
export function protectedResourceMetadataUrl(resource: string): string {
  const u = new URL(resource);
  const path = u.pathname === "/" ? "" : u.pathname;
  return new URL(`/.well-known/oauth-protected-resource${path}`, u).href;
}

function rpcError(id: Id, code: number, message: string, data: Record<string, unknown>): JSONRPCMessage {
  return { jsonrpc: "2.0", id, error: { code, message, data } };
}


export function createMcpGuard(o: McpGuardOptions): McpGuard {
  const resourceUrl = new URL(o.resource);
  const verifier = createVerifier({ ...o, audience: o.resource });
  const metadata: ProtectedResourceMetadata = {
    resource: o.resource,
    authorization_servers: [o.issuer],
    bearer_methods_supported: ["header"],
    ...(o.resourceName ? { resource_name: o.resourceName } : {}),
  };
  const resourceMetadataUrl = protectedResourceMetadataUrl(o.resource);
  const metadataPath = new URL(resourceMetadataUrl).pathname;
  const metadataBody = JSON.stringify(metadata);

  // Revocations seen, numbered: a request verified at number n is refused if one after n names it.
  const recent: Revocation[] = [];
  let forgotten = 0;
  const verifiedAt = new WeakMap<AuthInfo, number>();
  const byToken = new Map<string, Set<Watch>>();
  const byAgent = new Map<string, Set<Watch>>();

  const index = (m: Map<string, Set<Watch>>, key: string, w: Watch) => {
    let s = m.get(key);
    if (!s) m.set(key, (s = new Set()));
    s.add(w);
  };
  const unindex = (m: Map<string, Set<Watch>>, key: string, w: Watch) => {
    const s = m.get(key);
    if (s?.delete(w) && s.size === 0) m.delete(key);
  };

  const why = (r: Revocation) => (r.agentId !== undefined ? "agent_revoked" : "revoked");

  /** Why a token verified when `n` revocations had been seen is no longer good, if it is not. */
  function revokedSince(n: number, who: Who): string | undefined {
    // Older than what is remembered: refused, as it cannot be shown to be current (a retry is verified afresh).
    if (n < forgotten) return "unconfirmed";
    for (let i = n - forgotten; i < recent.length; i++) {
      const r = recent[i]!;
      if (r.tokenId === who.tokenId || r.agentId === who.agentId) return why(r);
    }
    return undefined;
  }

  /** Ends every request in flight on the transport with an error the client sees, then closes it. */
  function end(w: Watch, reason: string): void {
    if (w.ended) return;
    w.ended = true;
    const message = reason === "agent_revoked" ? "agentid: the agent was revoked; the call was ended" : "agentid: the token was revoked; the call was ended";
    const sent: Promise<unknown>[] = [];
    for (const id of w.inflight) {
      sent.push(w.send(rpcError(id, MCP_TOKEN_REVOKED, message, { error: "invalid_token", reason })).catch(() => {}));
      // The protocol's own cancellation: the handler's signal fires and its result is never sent.
      w.deliver({ jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: id, reason } });
    }
    w.inflight.clear();
    void Promise.all(sent).then(() => w.transport.close().catch(() => {}));
  }

  verifier.onRevocation((r) => {
    recent.push(r);
    if (recent.length > 2 * RECENT_REVOCATIONS) {
      recent.splice(0, RECENT_REVOCATIONS);
      forgotten += RECENT_REVOCATIONS;
    }
    const watches = r.tokenId !== undefined ? byToken.get(r.tokenId) : byAgent.get(r.agentId);
    if (watches) for (const w of [...watches]) end(w, why(r));
  });

  function refuse(w: Watch, m: JSONRPCMessage, code: number, message: string, data: Record<string, unknown>): void {
    if (isJSONRPCRequest(m)) void w.send(rpcError(m.id, code, message, data)).catch(() => {});
  }

  /** Checks one incoming message against the watch: its verified token when it may be delivered. */
  function admit(w: Watch, m: JSONRPCMessage, auth: AuthInfo | undefined): AuthInfo | undefined {
    const n = auth === undefined ? undefined : verifiedAt.get(auth);
    if (auth === undefined || n === undefined) {
      refuse(w, m, MCP_TOKEN_REVOKED, "agentid: no token verified by this guard on this request (requireBearerAuth with it)", { error: "invalid_token", reason: "no_token" });
      return undefined;
    }
    const who = auth.extra as unknown as Who;
    const revoked = revokedSince(n, who);
    if (revoked) {
      refuse(w, m, MCP_TOKEN_REVOKED, `agentid: the token is no longer good (${revoked})`, { error: "invalid_token", reason: revoked });
      return undefined;
    }
    if (w.agentId !== undefined && w.agentId !== who.agentId) {
      refuse(w, m, MCP_TOKEN_REVOKED, "agentid: this session belongs to another agent", { error: "invalid_token", reason: "session_agent" });
      return undefined;
    }
    if (w.agentId === undefined) index(byAgent, (w.agentId = who.agentId), w);
    if (!w.tokens.has(who.tokenId)) {
      w.tokens.add(who.tokenId);
      index(byToken, who.tokenId, w);
    }
    return auth;
  }

  /**
   * A tools/call, checked and counted through the verifier: under its operation ("tools/call
   * <tool>", so the agent's trail shows which tools it called) and, when the tool needs one, its
   * scope (a refusal is a scope violation like any other). What refuses it, if anything.
   */
  async function toolCheck(m: JSONRPCMessage, auth: AuthInfo): Promise<{ code: number; message: string; data: Record<string, unknown> } | undefined> {
    if (!isJSONRPCRequest(m) || m.method !== "tools/call") return undefined;
    const name = m.params?.name;
    const tool = typeof name === "string" ? name : "";
    const scope = o.toolScopes && Object.hasOwn(o.toolScopes, tool) ? o.toolScopes[tool] : undefined;
    // A name the report could not carry (MCP's are at most 128 of [A-Za-z0-9_.-/]) is counted without it.
    const operation = TOOL_NAME.test(tool) ? `tools/call ${tool}` : "tools/call";
    const r = await verifier.verify(auth.token, { scope, operation });
    if (r.active) return undefined;
    if (r.reason === "scope_not_granted") {
      return {
        code: MCP_INSUFFICIENT_SCOPE,
        message: `agentid: tool ${tool} needs scope ${scope}, which this token does not hold`,
        data: { error: "insufficient_scope", scope },
      };
    }
    return { code: MCP_TOKEN_REVOKED, message: `agentid: the token is no longer good (${r.reason})`, data: { error: "invalid_token", reason: r.reason } };
  }

  function watch(transport: Transport): void {
    const deliver = transport.onmessage;
    if (!deliver) throw new Error("agentid/mcp: connect the server to the transport first");
    const send = transport.send.bind(transport);
    const w: Watch = { transport, send, deliver, agentId: undefined, tokens: new Set(), inflight: new Set(), queue: Promise.resolve(), ended: false };
    transport.send = (m, opts) => {
      if (w.ended) return Promise.resolve();
      if ((isJSONRPCResultResponse(m) || isJSONRPCErrorResponse(m)) && m.id !== undefined) w.inflight.delete(m.id);
      return send(m, opts);
    };
    transport.onmessage = (m, extra) => {
      if (w.ended) return;
      const auth = admit(w, m, extra?.authInfo);
      if (!auth) return;
      // Watched from here: a revocation from now on ends it.
      if (isJSONRPCRequest(m)) w.inflight.add(m.id);
      w.queue = w.queue.then(async () => {
        const refused = await toolCheck(m, auth);
        if (w.ended) return;
        if (refused && isJSONRPCRequest(m)) {
          w.inflight.delete(m.id);
          refuse(w, m, refused.code, refused.message, refused.data);
          return;
        }
        deliver(m, extra);
      });
    };
    const onclose = transport.onclose;
    transport.onclose = () => {
      w.ended = true;
      if (w.agentId !== undefined) unindex(byAgent, w.agentId, w);
      for (const t of w.tokens) unindex(byToken, t, w);
      onclose?.();
    };
  }

  return {
    async verifyAccessToken(token) {
      const n = forgotten + recent.length;
      const r = await verifier.verify(token);
      if (!r.active) {
        if (r.reason === "stale" || r.reason === "unavailable") throw new ServerError(`agentid cannot verify tokens now (${r.reason})`);
        throw new InvalidTokenError(`token refused: ${r.reason}`);
      }
      const auth: AuthInfo = {
        token,
        clientId: r.agentId,
        scopes: r.scopes,
        expiresAt: Math.floor(r.expiresAt.getTime() / 1000),
        resource: resourceUrl,
        extra: { agentId: r.agentId, tokenId: r.tokenId },
      };
      verifiedAt.set(auth, n);
      return auth;
    },
    resourceMetadataUrl,
    metadata,
    metadataHandler(req, res, next) {
      if ((req.url ?? "").split("?")[0] !== metadataPath) {
        if (next) next();
        else res.writeHead(404).end();
        return;
      }
      const cors = { "access-control-allow-origin": "*", "access-control-allow-methods": "GET, HEAD, OPTIONS", "access-control-allow-headers": "mcp-protocol-version" };
      if (req.method === "OPTIONS") res.writeHead(204, cors).end();
      else if (req.method === "GET" || req.method === "HEAD")
        res.writeHead(200, { ...cors, "content-type": "application/json", "cache-control": "max-age=300" }).end(req.method === "GET" ? metadataBody : undefined);
      else res.writeHead(405, { allow: "GET, HEAD, OPTIONS" }).end();
    },
    async connect(server, transport) {
      await server.connect(transport);
      watch(transport);
    },
    verifier,
    ready: () => verifier.ready(),
    close: () => verifier.close(),
  };
}
