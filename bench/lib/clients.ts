// Typed clients for every service, used by bench/ and test/; no vitest imports.
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { AgentService } from "../../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../../gen/agentid/v1/token_pb.js";
import { RevocationService } from "../../gen/agentid/v1/revocation_pb.js";

export interface Clients {
  agents: Client<typeof AgentService>;
  tokens: Client<typeof TokenService>;
  revocations: Client<typeof RevocationService>;
}

export function clientsFor(transport: Transport): Clients {
  return {
    agents: createClient(AgentService, transport),
    tokens: createClient(TokenService, transport),
    revocations: createClient(RevocationService, transport),
  };
}

/** Sends `authorization: Bearer <key>` on every call. */
export function bearer(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
}
