import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RevokeApiKeyRequest, RevokeApiKeyResponseSchema } from "../../../gen/agentid/v1/key_pb.js";
import { revokeKey } from "../../domain/keys.js";
import { invalidArgument } from "../../domain/errors.js";
import { KEY_ID_SHAPE } from "../../domain/ids.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { apiKeyMessage } from "../messages.js";

export function revokeApiKeyRoute(ctx: AppContext) {
  return async (req: RevokeApiKeyRequest, call: CallContext): Promise<MessageInitShape<typeof RevokeApiKeyResponseSchema>> => {
    if (!KEY_ID_SHAPE.test(req.keyId)) throw invalidArgument("key_id", "is not a key id (key_ followed by 22 base62 characters)");
    const key = await revokeKey(ctx.db, ctx.sequencer, req.keyId, call.principal);
    ctx.auth.forget(key.id);
    // Streams opened with the key end now here; other replicas end theirs at their next key check.
    ctx.feed.endStreamsOf(key.id);
    ctx.logger.info({ keyId: key.id, by: call.principal }, "API key revoked");
    return { key: apiKeyMessage(key) };
  };
}
