import type { WatchRevocationsRequest } from "../../../gen/agentid/v1/revocation_pb.js";
import { DomainError, invalidArgument } from "../../domain/errors.js";
import type { Frame } from "../../feed/frame.js";
import { FeedRefusal } from "../../feed/refusal.js";
import type { Watcher } from "../../feed/watcher.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";

export function watchRevocationsRoute(ctx: AppContext) {
  // A plain iterator over the watcher rather than an async generator: see src/lib/iterables.ts.
  return function (req: WatchRevocationsRequest, call: CallContext): AsyncIterable<Frame> {
    if (req.afterRevision < 0n) throw invalidArgument("after_revision", "must not be negative");
    const caller = call.caller;
    // The access rule admits API keys only; the stream is bound to the key (its audiences, its life).
    if (caller?.kind !== "key") throw new DomainError("unauthenticated", "WatchRevocations needs an API key");
    let watcher: Watcher;
    try {
      watcher = ctx.feed.subscribe(req.afterRevision, { keyId: caller.keyId, role: caller.role, audiences: caller.audiences }, call.peer);
    } catch (err) {
      if (err instanceof FeedRefusal && err.holdMs > 0) return answeredLater(err, call);
      throw err;
    }
    const unsubscribe = call.onCancel(() => watcher.end());
    const close = () => {
      unsubscribe();
      watcher.end();
    };
    const done = { done: true, value: undefined } as const;
    return {
      [Symbol.asyncIterator]: () => ({
        next: () =>
          watcher.next().then(
            (frame): IteratorResult<Frame> => {
              if (frame) return { done: false, value: frame };
              close();
              return done;
            },
            (err: unknown) => {
              close();
              throw err;
            },
          ),
        return: () => {
          close();
          return Promise.resolve(done);
        },
      }),
    };
  };
}

/** A stream that ends with `refusal` after its hold (or at once when the client goes away). */
function answeredLater(refusal: FeedRefusal, call: CallContext): AsyncIterable<Frame> {
  return {
    [Symbol.asyncIterator]: () => ({
      next: () =>
        new Promise<IteratorResult<Frame>>((_, reject) => {
          const fail = () => {
            clearTimeout(t);
            off();
            reject(refusal);
          };
          const t = setTimeout(fail, refusal.holdMs);
          const off = call.onCancel(fail);
        }),
      return: () => Promise.resolve({ done: true, value: undefined }),
    }),
  };
}
