import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { PolicyKind, type CreatePolicyRequest, type CreatePolicyResponseSchema } from "../../../gen/agentid/v1/policy_pb.js";
import { createPolicy } from "../../domain/policies.js";
import { invalidArgument } from "../../domain/errors.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { policyMessage } from "../messages.js";

export function createPolicyRoute(ctx: AppContext) {
  return async (req: CreatePolicyRequest, call: CallContext): Promise<MessageInitShape<typeof CreatePolicyResponseSchema>> => {
    const p = req.policy;
    if (!p) throw invalidArgument("policy", "is required");
    let kind: "scope_violations" | "trust_below";
    switch (p.kind) {
      case PolicyKind.SCOPE_VIOLATIONS:
        kind = "scope_violations";
        break;
      case PolicyKind.TRUST_BELOW:
        kind = "trust_below";
        break;
      default:
        throw invalidArgument("policy.kind", "must be POLICY_KIND_SCOPE_VIOLATIONS or POLICY_KIND_TRUST_BELOW");
    }
    const policy = await createPolicy(ctx.db, ctx.sequencer, {
      name: p.name,
      kind,
      threshold: p.threshold,
      windowMs: p.window ? durationMs(p.window) : undefined,
      createdBy: call.principal,
    });
    ctx.logger.info({ policy: policy.name, by: call.principal }, "policy created");
    return { policy: policyMessage(policy) };
  };
}
