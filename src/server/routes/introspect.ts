import type { MessageInitShape } from "@bufbuild/protobuf";
import type { IntrospectRequest, IntrospectResponseSchema } from "../../../gen/agentid/v1/token_pb.js";
import { introspect } from "../../domain/tokens.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireWords } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import { introspectResponse } from "../messages.js";

export function introspectRoute(ctx: AppContext) {
  return async (req: IntrospectRequest): Promise<MessageInitShape<typeof IntrospectResponseSchema>> => {
    // An empty or malformed token is an answer (MALFORMED), not an error: RFC 7662 says inactive.
    if (req.token.length > 4096) throw invalidArgument("token", "must be at most 4096 characters");
    if (req.requiredScope) requireWords("required_scope", [req.requiredScope], 128, 1);
    return introspectResponse(await introspect(ctx.db, req.token, req.requiredScope));
  };
}
