import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

export interface TransportOptions {
  /** "grpc" (HTTP/2, the server's fast path) or "connect" (HTTP/1.1, e.g. through a proxy). */
  protocol?: "grpc" | "connect";
  /** Sent as `authorization: Bearer <apiKey>` on every call. */
  apiKey?: string;
  /** Extra headers on every call. */
  headers?: Record<string, string>;
  /** Extra interceptors (tracing, tests). */
  interceptors?: Interceptor[];
  /** A ready transport used instead of one built from the endpoint (the server's in-process one). */
  transport?: Transport;
}

export function createTransport(baseUrl: string, o: TransportOptions): Transport {
  if (o.transport) return o.transport;
  const headers: [string, string][] = Object.entries(o.headers ?? {});
  if (o.apiKey) headers.push(["authorization", `Bearer ${o.apiKey}`]);
  const addHeaders: Interceptor = (next) => (req) => {
    for (const [k, v] of headers) req.header.set(k, v);
    return next(req);
  };
  const interceptors = [addHeaders, ...(o.interceptors ?? [])];
  return o.protocol === "connect"
    ? createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors })
    : createGrpcTransport({ baseUrl, interceptors });
}
