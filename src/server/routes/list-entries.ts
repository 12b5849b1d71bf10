import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ListEntriesRequest, ListEntriesResponseSchema } from "../../../gen/agentid/v1/audit_pb.js";
import { listEntryPage } from "../../domain/audit.js";
import type { AppContext } from "../context.js";
import { auditEntryMessage } from "../messages.js";

export function listEntriesRoute(ctx: AppContext) {
  return async (req: ListEntriesRequest): Promise<MessageInitShape<typeof ListEntriesResponseSchema>> => {
    const page = await listEntryPage(ctx.db, ctx.audit, {
      agentId: req.agentId,
      kind: req.kind,
      since: req.since ? timestampDate(req.since) : undefined,
      until: req.until ? timestampDate(req.until) : undefined,
      startSeq: req.startSeq,
      pageSize: req.pageSize,
      pageToken: req.pageToken,
    });
    return { entries: page.entries.map(auditEntryMessage), nextPageToken: page.nextPageToken };
  };
}
