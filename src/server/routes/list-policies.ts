import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListPoliciesResponseSchema } from "../../../gen/agentid/v1/policy_pb.js";
import { listPolicies } from "../../domain/policies.js";
import type { AppContext } from "../context.js";
import { policyMessage } from "../messages.js";

export function listPoliciesRoute(ctx: AppContext) {
  return async (): Promise<MessageInitShape<typeof ListPoliciesResponseSchema>> => ({
    policies: (await listPolicies(ctx.db)).map(policyMessage),
  });
}
