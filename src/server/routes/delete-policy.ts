import type { MessageInitShape } from "@bufbuild/protobuf";
import type { DeletePolicyRequest, DeletePolicyResponseSchema } from "../../../gen/agentid/v1/policy_pb.js";
import { removePolicy } from "../../domain/policies.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";

export function deletePolicyRoute(ctx: AppContext) {
  return async (req: DeletePolicyRequest, call: CallContext): Promise<MessageInitShape<typeof DeletePolicyResponseSchema>> => {
    await removePolicy(ctx.db, ctx.sequencer, req.name, call.principal);
    ctx.logger.info({ policy: req.name, by: call.principal }, "policy deleted");
    return {};
  };
}
