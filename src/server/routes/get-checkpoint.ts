import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GetCheckpointRequest, GetCheckpointResponseSchema } from "../../../gen/agentid/v1/audit_pb.js";
import { signedCheckpoint } from "../../domain/audit.js";
import type { AppContext } from "../context.js";
import { checkpointMessage } from "../messages.js";

export function getCheckpointRoute(ctx: AppContext) {
  return async (_req: GetCheckpointRequest): Promise<MessageInitShape<typeof GetCheckpointResponseSchema>> => {
    return { checkpoint: checkpointMessage(await signedCheckpoint(ctx.audit)) };
  };
}
