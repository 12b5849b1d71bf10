import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GetTrustScoreRequest, GetTrustScoreResponseSchema } from "../../../gen/agentid/v1/activity_pb.js";
import { requireAgentId } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import { trustScoreMessage } from "../messages.js";

export function getTrustScoreRoute(ctx: AppContext) {
  return async (req: GetTrustScoreRequest): Promise<MessageInitShape<typeof GetTrustScoreResponseSchema>> => {
    // Computed fresh, so age and rate are current; reading writes nothing (history records changes as activity arrives).
    return { trustScore: trustScoreMessage(await ctx.activity.score(requireAgentId("agent_id", req.agentId))) };
  };
}
