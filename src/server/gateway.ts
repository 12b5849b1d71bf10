// What the gateway surfaces (Envoy ext_authz, nginx auth_request) share: the verdict on a token,
// the refusal it maps to, the headers handed to the upstream, and the count of each decision.
import type { InactiveCause, VerifyResult } from "../client/verifier.js";
import { refusal } from "../client/middleware.js";
import { audienceAdmits, type Introspection } from "../domain/tokens.js";
import { requireWords } from "../domain/validate.js";
import { hashSecret } from "../domain/ids.js";
import type { AppContext } from "./context.js";
import { reporterOf, type Caller } from "./auth.js";

export type Verdict = VerifyResult | { active: false; reason: InactiveCause };

/** A live introspection as a verdict (the SDK's causes are the domain's reasons, lower-cased). */
export function verdictOf(i: Introspection): Verdict {
  const t = i.token;
  if (!i.active || !t) return { active: false, reason: (i.inactiveReason ?? "UNKNOWN_TOKEN").toLowerCase() as InactiveCause };
  return { active: true, tokenId: t.id, agentId: t.agentId, scopes: t.scopes, audiences: t.audiences, expiresAt: t.expiresAt, source: "network" };
}

/**
 * Applies the calling resource server's audience binding, then the required scope, to a verdict
 * reached without them (the shared cache holds every audience's tokens). A token for none of the
 * caller's audiences is unknown to it, exactly as Introspect answers, whatever its scopes.
 */
export function narrow(v: Verdict, audiences: readonly string[] | undefined, scope: string | undefined): Verdict {
  if (!v.active) return v;
  if (!audienceAdmits(v.audiences, audiences)) return { active: false, reason: "unknown_token" };
  if (scope !== undefined && !v.scopes.includes(scope)) return { active: false, reason: "scope_not_granted" };
  return v;
}

/** A required scope from gateway configuration, checked like Introspect's required_scope. */
export function requiredScope(field: string, s: string | undefined): string | undefined {
  if (s === undefined || s === "") return undefined;
  return requireWords(field, [s], 128, 1)[0];
}

export type Decision =
  | { allow: true; headers: Record<string, string> }
  | { allow: false; status: number; headers: Record<string, string>; body: string };

/** Headers the upstream receives for an allowed request; the gateway overwrites any the client sent. */
export const UPSTREAM_HEADERS = ["x-agentid-agent-id", "x-agentid-token-id", "x-agentid-scopes", "x-agentid-audiences", "x-agentid-expires-at"] as const;

export function decide(v: Verdict, scope: string | undefined): Decision {
  if (v.active) {
    return {
      allow: true,
      headers: {
        "x-agentid-agent-id": v.agentId,
        "x-agentid-token-id": v.tokenId,
        "x-agentid-scopes": v.scopes.join(" "),
        "x-agentid-audiences": v.audiences.join(" "),
        "x-agentid-expires-at": v.expiresAt.toISOString(),
      },
    };
  }
  const { status, error } = refusal(v.reason);
  return {
    allow: false,
    status,
    headers: {
      "www-authenticate": `Bearer error="${error}"${scope && v.reason === "scope_not_granted" ? `, scope="${scope}"` : ""}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ error, reason: v.reason }),
  };
}

/** A refusal for a request that carried no bearer token at all (RFC 6750 §3.1: no error code). */
export const NO_TOKEN: Decision = {
  allow: false,
  status: 401,
  headers: { "www-authenticate": "Bearer", "content-type": "application/json" },
  body: JSON.stringify({ error: "invalid_request", reason: "missing_token" }),
};

/** A decision as usage counts it; undefined for a token nobody can be blamed for (malformed, unknown) or no decision (stale, unavailable). */
function outcomeOf(v: Verdict): string | undefined {
  if (v.active) return "allowed";
  switch (v.reason) {
    case "scope_not_granted":
    case "audience_mismatch":
      return v.reason;
    case "expired":
    case "revoked":
    case "agent_revoked":
      return `inactive:${v.reason}`;
    default:
      return undefined;
  }
}

/**
 * Counts a gate's decision as the agent's behaviour, through the same path as resource servers'
 * usage reports (trust score, policies, trail). What counts: every decision of a gateway (nginx
 * auth_request, Envoy ext_authz), which exist only to gate agents' requests, whatever key they
 * hold; and Introspect (RPC or RFC 7662) only under a resource_server key. An admin or issuer
 * introspecting is an operator looking at a token, not the agent acting, and never counts.
 */
export function countDecision(
  ctx: AppContext,
  caller: Caller | undefined,
  gate: "gateway" | "introspect",
  /** The token's id when the gate read it (an introspection's answer); else the token, hashed here if needed. */
  token: { tokenId: string } | string,
  v: Verdict,
  scope: string | undefined,
): void {
  if (caller?.kind !== "key" || (gate === "introspect" && caller.role !== "resource_server")) return;
  const outcome = outcomeOf(v);
  if (outcome === undefined) return;
  ctx.activity.countDecision(reporterOf(caller), gate, {
    token: typeof token !== "string" ? token : v.active ? { tokenId: v.tokenId } : { sha256: hashSecret(token) },
    // The audience the token and a resource_server key share (an admin's gateway has none).
    audience: "",
    scope: scope ?? "",
    operation: "",
    outcome,
  });
}
