import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RevokeRequest, RevokeResponseSchema } from "../../../gen/agentid/v1/token_pb.js";
import { revoke, type RevokeTarget } from "../../domain/revocation.js";
import { invalidArgument } from "../../domain/errors.js";
import { isWellFormedToken } from "../../domain/ids.js";
import { requireAgentId, requireText, requireTokenId } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";

function target(req: RevokeRequest): RevokeTarget {
  const t = req.target;
  switch (t.case) {
    case "token":
      if (!isWellFormedToken(t.value)) throw invalidArgument("token", "is not a well-formed at_ token (bad shape or checksum)");
      return { token: t.value };
    case "tokenId":
      return { tokenId: requireTokenId("token_id", t.value) };
    case "agentId":
      return { agentId: requireAgentId("agent_id", t.value) };
    case undefined:
      throw invalidArgument("target", "one of token, token_id or agent_id is required");
    default: {
      const never: never = t;
      return never;
    }
  }
}

export function revokeRoute(ctx: AppContext) {
  return async (req: RevokeRequest, call: CallContext): Promise<MessageInitShape<typeof RevokeResponseSchema>> => {
    const what = target(req);
    const reason = requireText("reason", req.reason, 512);
    const result = await revoke(ctx.db, ctx.sequencer, what, reason, call.principal);
    ctx.logger.info(
      {
        // Never the token itself: its id is logged once known, here only the kind of target.
        target: "agentId" in what ? { agentId: what.agentId } : "tokenId" in what ? { tokenId: what.tokenId } : "token",
        revision: result.revision.toString(),
        tokensRevoked: result.tokensRevoked.toString(),
        by: call.principal,
      },
      "revoked",
    );
    // The kill's trail: what the agent did up to now reaches the log without waiting for its bucket.
    if ("agentId" in what && !result.alreadyRevoked) void ctx.activity.killed(what.agentId);
    return { revision: result.revision, tokensRevoked: result.tokensRevoked, alreadyRevoked: result.alreadyRevoked };
  };
}
