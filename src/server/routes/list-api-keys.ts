import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListApiKeysResponseSchema } from "../../../gen/agentid/v1/key_pb.js";
import { listApiKeys } from "../../domain/keys.js";
import type { AppContext } from "../context.js";
import { apiKeyMessage } from "../messages.js";

export function listApiKeysRoute(ctx: AppContext) {
  return async (): Promise<MessageInitShape<typeof ListApiKeysResponseSchema>> => ({
    keys: (await listApiKeys(ctx.db)).map(apiKeyMessage),
  });
}
