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
import type { PreEncoded } from "./encoded.js";
import { registerAgentRoute } from "./routes/register-agent.js";
import { getAgentRoute } from "./routes/get-agent.js";
import { listAgentsRoute } from "./routes/list-agents.js";
import { issueRoute } from "./routes/issue.js";
import { introspectRoute } from "./routes/introspect.js";
import { revokeRoute } from "./routes/revoke.js";
import { watchRevocationsRoute } from "./routes/watch-revocations.js";
import { createApiKeyRoute } from "./routes/create-api-key.js";
import { listApiKeysRoute } from "./routes/list-api-keys.js";
import { revokeApiKeyRoute } from "./routes/revoke-api-key.js";
import { getCurrentPrincipalRoute } from "./routes/get-current-principal.js";
import { createPolicyRoute } from "./routes/create-policy.js";
import { listPoliciesRoute } from "./routes/list-policies.js";
import { deletePolicyRoute } from "./routes/delete-policy.js";
import { reportActivityRoute } from "./routes/report-activity.js";
import { getTrustScoreRoute } from "./routes/get-trust-score.js";
import { listTrustScoresRoute } from "./routes/list-trust-scores.js";
import { reportUsageRoute } from "./routes/report-usage.js";
import { getActivityRoute } from "./routes/get-activity.js";
import { KeyService } from "../../gen/agentid/v1/key_pb.js";
import { PolicyService } from "../../gen/agentid/v1/policy_pb.js";
import { ActivityService } from "../../gen/agentid/v1/activity_pb.js";
import { admission, guard, type Access, type Admit } from "./access.js";
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
      ? (req: MessageShape<I>, call: CallContext) => AsyncIterable<MessageInitShape<O> | PreEncoded>
      : never;
export type ServiceHandlers<S extends DescService> = { [P in keyof S["method"]]: MethodHandler<S["method"][P]> };

/** The erased form the transports iterate over. */
export type Handler = (req: never, call: CallContext) => Promise<unknown> | AsyncIterable<unknown>;
export interface ServiceRoutes {
  service: DescService;
  handlers: Record<string, Handler>;
  /** Per method: the check from headers that transports make before reading the body. */
  admit?: Record<string, Admit>;
}

const ADMIN: Access = { roles: ["admin"] };
const OPERATORS: Access = { roles: ["admin", "issuer"] };
const ANY_ROLE: Access = { roles: ["admin", "issuer", "resource_server"] };

/** The handlers of one service, each behind its access rule: no method is reachable without one. */
function service<S extends DescService>(
  ctx: AppContext,
  service: S,
  handlers: ServiceHandlers<S>,
  access: { [P in keyof S["method"]]: Access },
): ServiceRoutes {
  const guarded: Record<string, Handler> = {};
  const admit: Record<string, Admit> = {};
  for (const m of service.methods) {
    const h = (handlers as Record<string, Handler>)[m.localName]!;
    const rule = (access as Record<string, Access>)[m.localName]!;
    const g = guard(m, h, rule, ctx.auth);
    guarded[m.localName] = g;
    admit[m.localName] = admission(m, rule, ctx.auth);
  }
  return { service, handlers: guarded, admit };
}

/** Every service with its handlers: the one list both transports mount. */
export function routes(ctx: AppContext): ServiceRoutes[] {
  return [
    service(
      ctx,
      AgentService,
      { registerAgent: registerAgentRoute(ctx), getAgent: getAgentRoute(ctx), listAgents: listAgentsRoute(ctx) },
      { registerAgent: OPERATORS, getAgent: OPERATORS, listAgents: OPERATORS },
    ),
    service(
      ctx,
      TokenService,
      { issue: issueRoute(ctx), introspect: introspectRoute(ctx), revoke: revokeRoute(ctx) },
      {
        // An agent may issue itself a token with no API key, by signing the request (see issue.ts).
        issue: { roles: ["admin", "issuer"], anonymous: true },
        introspect: { roles: ["admin", "issuer", "resource_server"] },
        revoke: OPERATORS,
      },
    ),
    service(
      ctx,
      RevocationService,
      { watchRevocations: watchRevocationsRoute(ctx) },
      { watchRevocations: { roles: ["admin", "resource_server"], paced: () => ctx.feed.turn() } },
    ),
    service(
      ctx,
      KeyService,
      {
        createApiKey: createApiKeyRoute(ctx),
        listApiKeys: listApiKeysRoute(ctx),
        revokeApiKey: revokeApiKeyRoute(ctx),
        getCurrentPrincipal: getCurrentPrincipalRoute(ctx),
      },
      // Every key may ask who it is (the console shows what its role allows).
      { createApiKey: ADMIN, listApiKeys: ADMIN, revokeApiKey: ADMIN, getCurrentPrincipal: ANY_ROLE },
    ),
    service(
      ctx,
      PolicyService,
      { createPolicy: createPolicyRoute(ctx), listPolicies: listPoliciesRoute(ctx), deletePolicy: deletePolicyRoute(ctx) },
      { createPolicy: ADMIN, listPolicies: ADMIN, deletePolicy: ADMIN },
    ),
    service(
      ctx,
      ActivityService,
      {
        reportActivity: reportActivityRoute(ctx),
        getTrustScore: getTrustScoreRoute(ctx),
        listTrustScores: listTrustScoresRoute(ctx),
        reportUsage: reportUsageRoute(ctx),
        getActivity: getActivityRoute(ctx),
      },
      {
        reportActivity: { roles: ["admin", "resource_server"] },
        reportUsage: { roles: ["admin", "resource_server"] },
        getActivity: OPERATORS,
        getTrustScore: OPERATORS,
        listTrustScores: OPERATORS,
      },
    ),
    service(
      ctx,
      AuditService,
      {
        getCheckpoint: getCheckpointRoute(ctx),
        getInclusionProof: getInclusionProofRoute(ctx),
        getConsistencyProof: getConsistencyProofRoute(ctx),
        listEntries: listEntriesRoute(ctx),
        getPublicKey: getPublicKeyRoute(ctx),
        listCheckpoints: listCheckpointsRoute(ctx),
      },
      {
        // Checkpoints, proofs (hashes only) and the key are public facts. Entries are filtered by
        // role in the route: all for admins, agents and tokens for issuers, a resource server's
        // own audiences for it (list-entries.ts).
        getCheckpoint: ANY_ROLE,
        getInclusionProof: ANY_ROLE,
        getConsistencyProof: ANY_ROLE,
        listEntries: ANY_ROLE,
        getPublicKey: ANY_ROLE,
        listCheckpoints: ANY_ROLE,
      },
    ),
  ];
}
