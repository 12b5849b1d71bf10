import type {
  DescMethod,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import { AgentService } from "../../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../../gen/agentid/v1/token_pb.js";
import { RevocationService } from "../../gen/agentid/v1/revocation_pb.js";
import { AuditService } from "../../gen/agentid/v1/audit_pb.js";
import type { AppContext } from "./context.js";
import type { CallContext } from "./call.js";
import { registerAgentRoute } from "./routes/register-agent.js";
import { getAgentRoute } from "./routes/get-agent.js";
import { listAgentsRoute } from "./routes/list-agents.js";
import { issueRoute } from "./routes/issue.js";
import { introspectRoute } from "./routes/introspect.js";
import { revokeRoute } from "./routes/revoke.js";
import { watchRevocationsRoute } from "./routes/watch-revocations.js";
import { getCheckpointRoute } from "./routes/get-checkpoint.js";
import { getInclusionProofRoute } from "./routes/get-inclusion-proof.js";
import { getConsistencyProofRoute } from "./routes/get-consistency-proof.js";
import { listEntriesRoute } from "./routes/list-entries.js";
import { getPublicKeyRoute } from "./routes/get-public-key.js";
import { listCheckpointsRoute } from "./routes/list-checkpoints.js";

/** Like connect's ServiceImpl, with our transport-neutral CallContext. */
type MethodHandler<M extends DescMethod> =
  M extends DescMethodUnary<infer I, infer O>
    ? (req: MessageShape<I>, call: CallContext) => Promise<MessageInitShape<O>>
    : M extends DescMethodServerStreaming<infer I, infer O>
      ? (req: MessageShape<I>, call: CallContext) => AsyncIterable<MessageInitShape<O>>
      : never;
export type ServiceHandlers<S extends DescService> = { [P in keyof S["method"]]: MethodHandler<S["method"][P]> };

/** The erased form the transports iterate over. */
export type Handler = (req: never, call: CallContext) => Promise<unknown> | AsyncIterable<unknown>;
export interface ServiceRoutes {
  service: DescService;
  handlers: Record<string, Handler>;
}

function service<S extends DescService>(service: S, handlers: ServiceHandlers<S>): ServiceRoutes {
  return { service, handlers: handlers as Record<string, Handler> };
}

/** Every service with its handlers: the one list both transports mount. */
export function routes(ctx: AppContext): ServiceRoutes[] {
  return [
    service(AgentService, {
      registerAgent: registerAgentRoute(ctx),
      getAgent: getAgentRoute(ctx),
      listAgents: listAgentsRoute(ctx),
    }),
    service(TokenService, {
      issue: issueRoute(ctx),
      introspect: introspectRoute(ctx),
      revoke: revokeRoute(ctx),
    }),
    service(RevocationService, { watchRevocations: watchRevocationsRoute(ctx) }),
    service(AuditService, {
      getCheckpoint: getCheckpointRoute(ctx),
      getInclusionProof: getInclusionProofRoute(ctx),
      getConsistencyProof: getConsistencyProofRoute(ctx),
      listEntries: listEntriesRoute(ctx),
      getPublicKey: getPublicKeyRoute(ctx),
      listCheckpoints: listCheckpointsRoute(ctx),
    }),
  ];
}
