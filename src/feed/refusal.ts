import { DomainError, type ErrorKind } from "../domain/errors.js";

/**
 * A refusal the client can act on by waiting: the transports send `retryAfterMs` as the
 * `retry-after-ms` trailer (gRPC metadata / Connect trailer), and the SDK's follower waits at
 * least that long (plus jitter) before it resubscribes.
 */
export class FeedRefusal extends DomainError {
  constructor(
    kind: ErrorKind,
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(kind, message);
    this.name = "FeedRefusal";
  }
}
