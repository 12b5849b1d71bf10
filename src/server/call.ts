/** What a handler may know about the call, whichever transport carried it. */
export interface CallContext {
  /** Aborted when the client goes away or the server shuts down. */
  readonly signal: AbortSignal;
  /** A request header (gRPC metadata), lower-case name. */
  header(name: string): string | undefined;
  /** The client's connection (remote address and port), for per-connection limits. */
  readonly peer: string;
  /** Who is calling; recorded as revoked_by. */
  readonly principal: string;
}
