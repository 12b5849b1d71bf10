import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ListEntriesRequest, ListEntriesResponseSchema } from "../../../gen/agentid/v1/audit_pb.js";
import { listEntryPage } from "../../domain/audit.js";
import type { AppContext } from "../context.js";
import { auditEntryMessage } from "../messages.js";
import type { CallContext } from "../call.js";
import type { Caller } from "../auth.js";
import type { EntryVisibility } from "../../store/audit.js";

/**
 * The log follows the RPCs' rules: an issuer, which may not call ListApiKeys or ListPolicies, does
 * not read key or policy entries either; a resource server reads only what concerns its audiences.
 * Entries are whole or absent, never trimmed, so each one still hashes to its leaf.
 */
function entryVisibility(caller: Caller | undefined): EntryVisibility {
  if (caller?.kind !== "key") return { audiences: [] };
  switch (caller.role) {
    case "admin":
      return { all: true };
    case "issuer":
      return { agentsAndTokens: true };
    case "resource_server":
      return { audiences: caller.audiences };
    default: {
      const never: never = caller.role;
      return never;
    }
  }
}

export function listEntriesRoute(ctx: AppContext) {
  return async (req: ListEntriesRequest, call: CallContext): Promise<MessageInitShape<typeof ListEntriesResponseSchema>> => {
    const page = await listEntryPage(ctx.db, ctx.audit, {
      visibility: entryVisibility(call.caller),
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
