// Typed clients for every service, used by bench/ and test/; no vitest imports.
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { AgentService } from "../../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../../gen/agentid/v1/token_pb.js";
import { RevocationService } from "../../gen/agentid/v1/revocation_pb.js";
import { KeyService } from "../../gen/agentid/v1/key_pb.js";
import { PolicyService } from "../../gen/agentid/v1/policy_pb.js";
import { ActivityService } from "../../gen/agentid/v1/activity_pb.js";
import { AuditService } from "../../gen/agentid/v1/audit_pb.js";

/** A client of every agentid service, on one transport. */
export interface Clients {
  agents: Client<typeof AgentService>;
  tokens: Client<typeof TokenService>;
  revocations: Client<typeof RevocationService>;
  keys: Client<typeof KeyService>;
  policies: Client<typeof PolicyService>;
  activity: Client<typeof ActivityService>;
  audit: Client<typeof AuditService>;
}

export function clientsFor(transport: Transport): Clients {
  return {
    agents: createClient(AgentService, transport),
    tokens: createClient(TokenService, transport),
    revocations: createClient(RevocationService, transport),
    keys: createClient(KeyService, transport),
    policies: createClient(PolicyService, transport),
    activity: createClient(ActivityService, transport),
    audit: createClient(AuditService, transport),
  };
}

/** Sends `authorization: Bearer <key>` on every call. */
export function bearer(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
}
