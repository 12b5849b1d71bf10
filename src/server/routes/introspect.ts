import type { MessageInitShape } from "@bufbuild/protobuf";
import type { IntrospectRequest, IntrospectResponseSchema } from "../../../gen/agentid/v1/token_pb.js";
import { introspect } from "../../domain/tokens.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireWords } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { introspectResponse } from "../messages.js";
import { boundAudiences } from "../auth.js";
import { countDecision, verdictOf } from "../gateway.js";

export function introspectRoute(ctx: AppContext) {
  return async (req: IntrospectRequest, call: CallContext): Promise<MessageInitShape<typeof IntrospectResponseSchema>> => {
    // An empty or malformed token is an answer (MALFORMED), not an error: RFC 7662 says inactive.
    if (req.token.length > 4096) throw invalidArgument("token", "must be at most 4096 characters");
    if (req.requiredScope) requireWords("required_scope", [req.requiredScope], 128, 1);
    const audiences = boundAudiences(call.caller);
    const answer = await introspect(ctx.tokenLookup, req.token, req.requiredScope, audiences);
    ctx.metrics?.introspection("rpc", answer);
    // Counted in memory and ingested with the next batch: a read never turns into a write here,
    // and a refused scope reaches the policies through the same path as reported usage.
    countDecision(ctx, call.caller, "introspect", answer.token ? { tokenId: answer.token.id } : req.token, verdictOf(answer), req.requiredScope || undefined);
    return introspectResponse(answer);
  };
}
