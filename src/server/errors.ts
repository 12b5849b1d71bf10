import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { DomainError, type ErrorKind } from "../domain/errors.js";
import { isDatabaseUnavailable } from "../store/open.js";
import { FeedRefusal } from "../feed/refusal.js";

function codeOf(kind: ErrorKind): Code {
  switch (kind) {
    case "invalid_argument":
      return Code.InvalidArgument;
    case "not_found":
      return Code.NotFound;
    case "failed_precondition":
      return Code.FailedPrecondition;
    case "already_exists":
      return Code.AlreadyExists;
    case "out_of_range":
      return Code.OutOfRange;
    case "resource_exhausted":
      return Code.ResourceExhausted;
    case "unauthenticated":
      return Code.Unauthenticated;
    case "permission_denied":
      return Code.PermissionDenied;
    case "unavailable":
      return Code.Unavailable;
    default: {
      const never: never = kind;
      return never;
    }
  }
}

/** The status an error is answered with, as toConnectError maps it (for metrics; logs nothing). */
export function codeOfError(err: unknown): Code {
  if (err instanceof ConnectError) return err.code;
  if (err instanceof DomainError) return codeOf(err.kind);
  return isDatabaseUnavailable(err) ? Code.Unavailable : Code.Internal;
}

/**
 * The one error mapper. Connect codes equal gRPC status codes, so both transports use it.
 * Anything that is not a known error is a bug: it is logged and answered as INTERNAL without detail.
 */
export function toConnectError(err: unknown, logger: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof FeedRefusal) {
    return new ConnectError(err.message, codeOf(err.kind), { "retry-after-ms": String(err.retryAfterMs) });
  }
  if (err instanceof DomainError) return new ConnectError(err.message, codeOf(err.kind));
  // The database restarting or unreachable is the client's cue to retry, not a bug.
  if (isDatabaseUnavailable(err)) return new ConnectError("database unavailable; retry", Code.Unavailable);
  logger.error({ err }, "unhandled error");
  return new ConnectError("internal error", Code.Internal);
}
