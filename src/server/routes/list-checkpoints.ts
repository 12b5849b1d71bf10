import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListCheckpointsRequest, ListCheckpointsResponseSchema } from "../../../gen/agentid/v1/audit_pb.js";
import { listCheckpointPage } from "../../domain/audit.js";
import type { AppContext } from "../context.js";
import { checkpointMessage } from "../messages.js";

export function listCheckpointsRoute(ctx: AppContext) {
  return async (req: ListCheckpointsRequest): Promise<MessageInitShape<typeof ListCheckpointsResponseSchema>> => {
    const page = await listCheckpointPage(ctx.db, { maxTreeSize: req.maxTreeSize, pageSize: req.pageSize, pageToken: req.pageToken });
    return { checkpoints: page.checkpoints.map(checkpointMessage), nextPageToken: page.nextPageToken };
  };
}
