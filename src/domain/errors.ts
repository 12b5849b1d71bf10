// Typed errors the domain throws; src/server/errors.ts maps them to RPC codes.

export type ErrorKind =
  | "invalid_argument"
  | "not_found"
  | "failed_precondition"
  | "already_exists"
  | "out_of_range"
  | "resource_exhausted"
  | "unauthenticated"
  | "permission_denied"
  | "unavailable";

export class DomainError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "DomainError";
  }
}

export function invalidArgument(field: string, problem: string): DomainError {
  return new DomainError("invalid_argument", `${field}: ${problem}`);
}

export function notFound(what: string): DomainError {
  return new DomainError("not_found", `${what} not found`);
}

export function failedPrecondition(message: string): DomainError {
  return new DomainError("failed_precondition", message);
}
