// Envoy external authorization (ext_authz v3, gRPC): envoy.service.auth.v3.Authorization/Check.
//
// Envoy authenticates as a resource server with its API key in the Check call's own metadata
// (`authorization`, set by the filter's grpc_service.initial_metadata); the checked request's
// `authorization` header carries the agent's token. Answers come from memory: the SDK's verifier
// (cache + feed follower), one per calling key, fed in-process by this server's own feed and
// introspection under that key (its audiences, its stream limits, its life), so a revocation
// evicts here the moment the feed carries it, as in any resource server using the SDK.
import { ConnectError, createRouterTransport, type HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  Authorization,
  type CheckRequest,
  type CheckResponseSchema,
} from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { AttributeContext_HttpRequest } from "../../gen/envoy/service/auth/v3/attribute_context_pb.js";
import { HeaderValueOption_HeaderAppendAction } from "../../gen/envoy/config/core/v3/base_pb.js";
import { TokenService } from "../../gen/agentid/v1/token_pb.js";
import { RevocationService, type WatchRevocationsResponse } from "../../gen/agentid/v1/revocation_pb.js";
import { createVerifier, type Verifier } from "../client/verifier.js";
import { bearer } from "../client/middleware.js";
import { introspect } from "../domain/tokens.js";
import { DomainError } from "../domain/errors.js";
import type { AppContext } from "./context.js";
import { onAbort, type CallContext } from "./call.js";
import { actorOf, boundAudiences, type Caller } from "./auth.js";
import { isPreEncoded } from "./encoded.js";
import { admission, guard, type Access } from "./access.js";
import { introspectResponse } from "./messages.js";
import { watchRevocationsRoute } from "./routes/watch-revocations.js";
import type { ServiceRoutes } from "./services.js";
import { countDecision, decide, narrow, NO_TOKEN, requiredScope, type Decision } from "./gateway.js";

type KeyCaller = Caller & { kind: "key" };

/** The per-route context extension (ExtAuthzPerRoute check_settings) naming the required scope. */
export const SCOPE_EXTENSION = "agentid_scope";
/** Or, for every route of a filter, this header in the Check call's own metadata (initial_metadata). */
export const SCOPE_METADATA = "x-agentid-scope";

/**
 * A transport that reaches this server's own introspection and feed without a socket, as `caller`:
 * Introspect bound to its audiences, WatchRevocations with its view of the feed, exactly as if the
 * gateway ran the SDK itself.
 */
function inProcessTransport(ctx: AppContext, caller: KeyCaller) {
  const watch = watchRevocationsRoute(ctx);
  return createRouterTransport(({ service }) => {
    service(TokenService, {
      introspect: async (req) => introspectResponse(await introspect(ctx.tokenLookup, req.token, "", boundAudiences(caller))),
    });
    service(RevocationService, {
      // Frames are encoded once for socket streams; in process, the message itself goes.
      watchRevocations: async function* (req, hctx) {
        for await (const f of watch(req, internalCall(hctx, caller))) yield isPreEncoded(f) ? (f.message as WatchRevocationsResponse) : f;
      },
    });
  });
}

function internalCall(hctx: HandlerContext, caller: KeyCaller): CallContext {
  return {
    onCancel: (listener) => onAbort(hctx.signal, listener),
    header: () => undefined,
    peer: "in-process:ext_authz",
    caller,
    principal: actorOf(caller),
  };
}

/** The checked request's header; Envoy sends lower-case names, in `headers` or (raw) `header_map`. */
function requestHeader(http: AttributeContext_HttpRequest | undefined, name: string): string | undefined {
  if (!http) return undefined;
  const v = http.headers[name];
  if (v !== undefined) return v;
  for (const h of http.headerMap?.headers ?? []) {
    if (h.key.toLowerCase() === name) return h.value || Buffer.from(h.rawValue).toString("latin1");
  }
  return undefined;
}

const GRPC_CODE: Record<number, Code> = { 401: Code.Unauthenticated, 403: Code.PermissionDenied, 503: Code.Unavailable };

function checkResponse(d: Decision): MessageInitShape<typeof CheckResponseSchema> {
  // The upstream must see our values, never ones the client smuggled in under the same names.
  // Envoy drops a header whose value is empty instead of setting it, which would leave the
  // client's copy in place: those names are removed instead.
  const entries = Object.entries(d.headers);
  const headers = entries
    .filter(([, value]) => value !== "")
    .map(([key, value]) => ({ header: { key, value }, appendAction: HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD }));
  if (d.allow) {
    const headersToRemove = entries.filter(([, value]) => value === "").map(([key]) => key);
    return { status: { code: 0 }, httpResponse: { case: "okResponse", value: { headers, headersToRemove } } };
  }
  return {
    status: { code: GRPC_CODE[d.status] ?? Code.PermissionDenied, message: d.body },
    httpResponse: { case: "deniedResponse", value: { status: { code: d.status }, headers, body: d.body } },
  };
}

export function checkRoute(ctx: AppContext, verifierFor: (caller: KeyCaller) => Verifier) {
  return async (req: CheckRequest, call: CallContext): Promise<MessageInitShape<typeof CheckResponseSchema>> => {
    const attrs = req.attributes;
    const scope =
      requiredScope(`attributes.context_extensions[${SCOPE_EXTENSION}]`, attrs?.contextExtensions[SCOPE_EXTENSION]) ??
      requiredScope(`${SCOPE_METADATA} metadata`, call.header(SCOPE_METADATA));
    const token = bearer(requestHeader(attrs?.request?.http, "authorization"));
    if (token === undefined) return checkResponse(NO_TOKEN);
    const caller = call.caller;
    // The access rule admits API keys only.
    if (caller?.kind !== "key") throw new DomainError("unauthenticated", "Check needs an API key");
    // The verifier's answers are already bound to the caller's audiences; narrow adds the scope.
    const verdict = narrow(await verifierFor(caller).verify(token), undefined, scope);
    ctx.metrics?.introspection("ext_authz", verdict);
    countDecision(ctx, caller, "gateway", token, verdict, scope);
    return checkResponse(decide(verdict, scope));
  };
}

export interface ExtAuthz {
  routes: ServiceRoutes;
  /** The calling keys' verifiers, started by their first Check (a server no gateway calls follows no feed). */
  verifiers(): Iterable<Verifier>;
  close(): Promise<void>;
}

/** Check behind its access rule (resource servers and admins), with a verifier per calling key. */
export function createExtAuthz(ctx: AppContext): ExtAuthz {
  const verifiers = new Map<string, Verifier>();
  let closed = false;
  const forget = (keyId: string, v: Verifier) => {
    if (verifiers.get(keyId) !== v) return;
    verifiers.delete(keyId);
    void v.close();
  };
  const verifierFor = (caller: KeyCaller): Verifier => {
    if (closed) throw new DomainError("unavailable", "the server is shutting down");
    let v = verifiers.get(caller.keyId);
    if (v) return v;
    v = createVerifier({
      endpoint: "in-process",
      transport: inProcessTransport(ctx, caller),
      // When the feed is quiet past its budget (database away), every check asks live state
      // instead of trusting the cache, and is refused (503) if that fails too.
      mode: "strict",
      whenStale: "introspect",
      cacheSize: 100_000,
      backoff: { initialMs: 50, maxMs: 1000 },
      // The key was revoked (its stream ended for it): its checks fail authentication from now on.
      onFeedError: (err) => {
        if (ConnectError.from(err).code === Code.Unauthenticated) forget(caller.keyId, created);
      },
    });
    const created = v;
    verifiers.set(caller.keyId, v);
    return v;
  };
  const method = Authorization.method.check;
  const access: Access = { roles: ["admin", "resource_server"] };
  const routes: ServiceRoutes = {
    service: Authorization,
    handlers: { check: guard(method, checkRoute(ctx, verifierFor) as never, access, ctx.auth) },
    // The gateway's key is checked from the call's headers before its body is read.
    admit: { check: admission(method, access, ctx.auth) },
  };
  return {
    routes,
    verifiers: () => verifiers.values(),
    async close() {
      closed = true;
      await Promise.all([...verifiers.values()].map((v) => v.close()));
      verifiers.clear();
    },
  };
}
