import type { MessageInitShape } from "@bufbuild/protobuf";
import type { IntrospectRequest, IntrospectResponseSchema } from "../../../gen/agentid/v1/token_pb.js";
import { introspect } from "../../domain/tokens.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireWords } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { introspectResponse } from "../messages.js";
import { boundAudiences } from "../auth.js";

export function introspectRoute(ctx: AppContext) {
  return async (req: IntrospectRequest, call: CallContext): Promise<MessageInitShape<typeof IntrospectResponseSchema>> => {
    // An empty or malformed token is an answer (MALFORMED), not an error: RFC 7662 says inactive.
    if (req.token.length > 4096) throw invalidArgument("token", "must be at most 4096 characters");
    if (req.requiredScope) requireWords("required_scope", [req.requiredScope], 128, 1);
    const answer = await introspect(ctx.tokenLookup, req.token, req.requiredScope, boundAudiences(call.caller));
    ctx.metrics?.introspection("rpc", answer);
    const t = answer.token;
    if (t) {
      ctx.activity.countIntrospection(t.agentId);
      if (answer.inactiveReason === "SCOPE_NOT_GRANTED") {
        // Policies act on it at once, but the caller does not wait for them.
        ctx.activity
          .report(t.agentId, "scope_violation", `required scope ${req.requiredScope} not granted to token ${t.id}`, call.principal)
          .catch((err: Error) => ctx.logger.warn({ err: err.message, agentId: t.agentId }, "recording a scope violation failed"));
      }
    }
    return introspectResponse(answer);
  };
}
