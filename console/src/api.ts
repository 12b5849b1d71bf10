import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AgentService } from "../../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../../gen/agentid/v1/token_pb.js";
import { RevocationService } from "../../gen/agentid/v1/revocation_pb.js";
import { AuditService } from "../../gen/agentid/v1/audit_pb.js";
import { ActivityService } from "../../gen/agentid/v1/activity_pb.js";
import { PolicyService } from "../../gen/agentid/v1/policy_pb.js";
import { KeyService, Role, type ApiKey } from "../../gen/agentid/v1/key_pb.js";

// The key lives in sessionStorage only: gone when the tab closes, never in localStorage.
const KEY_SLOT = "agentid.apiKey";

export function savedKey(): string | undefined {
  return sessionStorage.getItem(KEY_SLOT) ?? undefined;
}
export function saveKey(key: string): void {
  sessionStorage.setItem(KEY_SLOT, key);
}
export function forgetKey(): void {
  sessionStorage.removeItem(KEY_SLOT);
}

export interface Api {
  agents: Client<typeof AgentService>;
  tokens: Client<typeof TokenService>;
  revocations: Client<typeof RevocationService>;
  audit: Client<typeof AuditService>;
  activity: Client<typeof ActivityService>;
  policies: Client<typeof PolicyService>;
  keys: Client<typeof KeyService>;
}

/** Clients of every service on this origin's Connect API, sending the key as a bearer token. */
export function apiFor(key: string): Api {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl: location.origin, interceptors: [bearer] });
  return {
    agents: createClient(AgentService, transport),
    tokens: createClient(TokenService, transport),
    revocations: createClient(RevocationService, transport),
    audit: createClient(AuditService, transport),
    activity: createClient(ActivityService, transport),
    policies: createClient(PolicyService, transport),
    keys: createClient(KeyService, transport),
  };
}

export type RoleName = "admin" | "issuer" | "resource_server";

export function roleName(r: Role): RoleName | undefined {
  switch (r) {
    case Role.ADMIN:
      return "admin";
    case Role.ISSUER:
      return "issuer";
    case Role.RESOURCE_SERVER:
      return "resource_server";
    default:
      return undefined;
  }
}

// What each role may do, as src/server/services.ts grants it. Only for showing and hiding
// controls: the server decides, and its refusals are shown as they come.
const GRANTS = {
  agents: ["admin", "issuer"],
  kill: ["admin", "issuer"],
  trust: ["admin", "issuer"],
  feed: ["admin", "resource_server"],
  audit: ["admin", "issuer"],
  policies: ["admin"],
  keys: ["admin"],
} as const satisfies Record<string, readonly RoleName[]>;

export type Capability = keyof typeof GRANTS;

export function can(role: RoleName, what: Capability): boolean {
  return (GRANTS[what] as readonly RoleName[]).includes(role);
}

export function whoMayDo(what: Capability): string {
  return GRANTS[what].join(" or ");
}

export interface Session {
  key: string;
  api: Api;
  principal: ApiKey;
  role: RoleName;
}

/** Checks the key with the server and says who it is. */
export async function signIn(key: string): Promise<Session> {
  const api = apiFor(key);
  const res = await api.keys.getCurrentPrincipal({});
  const role = res.key && roleName(res.key.role);
  if (!res.key || !role) throw new Error("the server did not say which role this key has");
  return { key, api, principal: res.key, role };
}

/** A failure as a person should read it: what went wrong and what to do. */
export function describeError(err: unknown): { title: string; detail: string } {
  const e = ConnectError.from(err);
  switch (e.code) {
    case Code.PermissionDenied:
      return { title: "Permission denied", detail: `${e.rawMessage}. Sign in with a key whose role allows it.` };
    case Code.Unauthenticated:
      return { title: "Not signed in", detail: `${e.rawMessage}. The key may have been revoked: sign in again.` };
    case Code.Unavailable:
    case Code.Unknown:
      if (/fetch|network|Failed|load/i.test(e.rawMessage) || e.code === Code.Unavailable) {
        return { title: "Server unreachable", detail: `agentid did not answer (${e.rawMessage}). Check that it is running; this page retries when you act again.` };
      }
      return { title: "Error", detail: e.rawMessage };
    case Code.NotFound:
      return { title: "Not found", detail: e.rawMessage };
    case Code.InvalidArgument:
      return { title: "Invalid input", detail: e.rawMessage };
    case Code.FailedPrecondition:
      return { title: "Not possible now", detail: e.rawMessage };
    case Code.ResourceExhausted:
      return { title: "Too many requests", detail: e.rawMessage };
    default:
      return { title: Code[e.code] ?? "Error", detail: e.rawMessage };
  }
}
