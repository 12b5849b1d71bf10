import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CreateApiKeyRequest, CreateApiKeyResponseSchema } from "../../../gen/agentid/v1/key_pb.js";
import { createApiKey } from "../../domain/keys.js";
import { invalidArgument } from "../../domain/errors.js";
import { requireText, requireWords } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { apiKeyMessage, roleFromMessage } from "../messages.js";

export function createApiKeyRoute(ctx: AppContext) {
  return async (req: CreateApiKeyRequest, call: CallContext): Promise<MessageInitShape<typeof CreateApiKeyResponseSchema>> => {
    const name = requireText("name", req.name, 128);
    const role = roleFromMessage(req.role);
    if (!role) throw invalidArgument("role", "must be ROLE_ADMIN, ROLE_ISSUER or ROLE_RESOURCE_SERVER");
    const audiences = requireWords("audiences", req.audiences, 256, 16);
    const { key, secret } = await createApiKey(ctx.db, ctx.sequencer, { name, role, audiences, createdBy: call.principal });
    ctx.logger.info({ keyId: key.id, role, by: call.principal }, "API key created");
    return { key: apiKeyMessage(key), secret };
  };
}
