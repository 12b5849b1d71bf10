import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GetCurrentPrincipalResponseSchema } from "../../../gen/agentid/v1/key_pb.js";
import { getApiKey } from "../../domain/keys.js";
import { DomainError } from "../../domain/errors.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { apiKeyMessage } from "../messages.js";

export function getCurrentPrincipalRoute(ctx: AppContext) {
  return async (_req: unknown, call: CallContext): Promise<MessageInitShape<typeof GetCurrentPrincipalResponseSchema>> => {
    // The access rule admits API keys only; an agent's proof never reaches here.
    if (call.caller?.kind !== "key") throw new DomainError("unauthenticated", "GetCurrentPrincipal needs an API key");
    return { key: apiKeyMessage(await getApiKey(ctx.db, call.caller.keyId)), principal: call.principal };
  };
}
