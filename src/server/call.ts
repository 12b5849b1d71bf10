import type { Caller } from "./auth.js";

/** The caller a transport's admission let in (undefined: anonymous, where the method allows it). */
export interface Admitted {
  caller: Caller | undefined;
}

/** What a handler may know about the call, whichever transport carried it. */
export interface CallContext {
  /**
   * Runs listener once when the client goes away or the server shuts down; returns a function
   * that removes it. A callback rather than an AbortSignal: a long-lived stream should not carry
   * an AbortController each.
   */
  onCancel(listener: () => void): () => void;
  /** A request header (gRPC metadata), lower-case name. */
  header(name: string): string | undefined;
  /** The client's connection (remote address and port), for per-connection limits. */
  readonly peer: string;
  /** The authenticated caller; undefined only where a method admits anonymous calls (Issue with a proof). */
  readonly caller?: Caller;
  /**
   * Who the transport admitted from the headers before it read the body (see access.ts
   * admission), so that the handler's guard does not authenticate the same credentials again.
   * Absent where nothing was admitted (in-process calls).
   */
  readonly admitted?: Admitted;
  /** Who is calling, as recorded in events and logs: "key:<id>", "agent:<id>" or "anonymous". */
  readonly principal: string;
}

/** onCancel over a Connect handler's AbortSignal (Connect transports and in-process calls). */
export function onAbort(signal: AbortSignal, listener: () => void): () => void {
  if (signal.aborted) {
    queueMicrotask(listener);
    return () => {};
  }
  signal.addEventListener("abort", listener, { once: true });
  return () => signal.removeEventListener("abort", listener);
}
