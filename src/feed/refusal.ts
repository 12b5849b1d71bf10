import { DomainError, type ErrorKind } from "../domain/errors.js";

/**
 * A refusal the client can act on by waiting: the transports send `retryAfterMs` as the
 * `retry-after-ms` trailer (gRPC metadata / Connect trailer), and the SDK's follower waits at
 * least that long (plus jitter) before it resubscribes. A client that does not wait gains
 * nothing: its next refusal is answered only once the time it was given has passed (`holdMs`).
 */
export class FeedRefusal extends DomainError {
  constructor(
    kind: ErrorKind,
    message: string,
    readonly retryAfterMs: number,
    /** Answer only after this long: the connection came back before the retry-after it was given. */
    readonly holdMs = 0,
  ) {
    super(kind, message);
    this.name = "FeedRefusal";
  }
}
