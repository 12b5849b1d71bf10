import type { WatchRevocationsRequest, WatchRevocationsResponse } from "../../../gen/agentid/v1/revocation_pb.js";
import { invalidArgument } from "../../domain/errors.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";
import { feedMessage } from "../messages.js";

export function watchRevocationsRoute(ctx: AppContext) {
  return async function* (req: WatchRevocationsRequest, call: CallContext): AsyncGenerator<WatchRevocationsResponse> {
    if (req.afterRevision < 0n) throw invalidArgument("after_revision", "must not be negative");
    const watcher = ctx.feed.subscribe(req.afterRevision, call.peer);
    const unsubscribe = call.onCancel(() => watcher.end());
    try {
      for (;;) {
        const m = await watcher.next();
        if (!m) return;
        yield feedMessage(m);
      }
    } finally {
      unsubscribe();
      watcher.end();
    }
  };
}
