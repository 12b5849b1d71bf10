import type { WatchRevocationsRequest } from "../../../gen/agentid/v1/revocation_pb.js";
import { DomainError, invalidArgument } from "../../domain/errors.js";
import type { Frame } from "../../feed/frame.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";

export function watchRevocationsRoute(ctx: AppContext) {
  return async function* (req: WatchRevocationsRequest, call: CallContext): AsyncGenerator<Frame> {
    if (req.afterRevision < 0n) throw invalidArgument("after_revision", "must not be negative");
    const caller = call.caller;
    // The access rule admits API keys only; the stream is bound to the key (its audiences, its life).
    if (caller?.kind !== "key") throw new DomainError("unauthenticated", "WatchRevocations needs an API key");
    const watcher = ctx.feed.subscribe(req.afterRevision, { keyId: caller.keyId, role: caller.role, audiences: caller.audiences }, call.peer);
    const unsubscribe = call.onCancel(() => watcher.end());
    try {
      for (;;) {
        const frame = await watcher.next();
        if (!frame) return;
        yield frame;
      }
    } finally {
      unsubscribe();
      watcher.end();
    }
  };
}
