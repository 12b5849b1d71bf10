import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GetTrustScoreRequest, GetTrustScoreResponseSchema } from "../../../gen/agentid/v1/activity_pb.js";
import { requireAgentId } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import { trustScoreMessage } from "../messages.js";

export function getTrustScoreRoute(ctx: AppContext) {
  return async (req: GetTrustScoreRequest): Promise<MessageInitShape<typeof GetTrustScoreResponseSchema>> => {
    // Computed fresh (and recorded), so age and rate factors are current.
    const { trust } = await ctx.activity.evaluate(requireAgentId("agent_id", req.agentId));
    return { trustScore: trustScoreMessage(trust) };
  };
}
