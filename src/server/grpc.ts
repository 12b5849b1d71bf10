import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Admitted, CallContext } from "./call.js";
import { toConnectError } from "./errors.js";
import type { Admit } from "./access.js";
import type { Handler, ServiceRoutes } from "./services.js";
import { isPreEncoded } from "./encoded.js";

// The gRPC path runs on grpc-js directly, not through connect-node's server: on a no-op unary RPC,
// connect-node's server measured about 5x slower than grpc-js here, with a fifth of its CPU in
// GC (README, "Design notes"). This adapter mounts the same handlers with protobuf-es serializers.

/** Stands in for a request that did not decode, so the handler can answer INVALID_ARGUMENT. */
class Undecodable {
  constructor(readonly message: string) {}
}

/** Serializes a response; a pre-encoded one (the feed's shared frames) is written as it is. */
function serializer(m: DescMethod): (msg: unknown) => Buffer {
  return (msg) =>
    isPreEncoded(msg)
      ? Buffer.from(msg.bytes.buffer, msg.bytes.byteOffset, msg.bytes.byteLength)
      : Buffer.from(toBinary(m.output, create(m.output, msg as never)));
}

export function grpcServiceDefinition(service: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    def[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      originalName: m.localName,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: (msg: unknown) => Buffer.from(toBinary(m.input, msg as never)),
      requestDeserialize: (buf: Buffer) => {
        try {
          return fromBinary(m.input, buf);
        } catch (err) {
          return new Undecodable((err as Error).message);
        }
      },
      responseSerialize: serializer(m),
      responseDeserialize: (buf: Buffer) => fromBinary(m.output, buf),
    };
  }
  return def;
}

class GrpcCall implements CallContext {
  constructor(private readonly call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>) {}

  onCancel(listener: () => void): () => void {
    if (this.call.cancelled) {
      queueMicrotask(listener);
      return () => {};
    }
    this.call.once("cancelled", listener);
    return () => this.call.off("cancelled", listener);
  }

  header(name: string): string | undefined {
    const v = this.call.metadata.get(name)[0];
    return typeof v === "string" ? v : undefined;
  }

  get peer(): string {
    return this.call.getPeer();
  }

  get admitted(): Admitted | undefined {
    return admittedBy.get(this.call.metadata);
  }

  get principal(): string {
    return "anonymous";
  }
}

function grpcError(err: ConnectError): grpc.ServerErrorResponse {
  const e: grpc.ServerErrorResponse = Object.assign(new Error(err.rawMessage), { code: err.code as number as grpc.status, details: err.rawMessage });
  // Trailers the error carries (retry-after-ms on a refused stream).
  let metadata: grpc.Metadata | undefined;
  err.metadata.forEach((v, k) => {
    (metadata ??= new grpc.Metadata()).set(k, v);
  });
  if (metadata) e.metadata = metadata;
  return e;
}

function badRequest(method: DescMethod, u: Undecodable): ConnectError {
  return new ConnectError(`request is not a valid ${method.input.typeName}: ${u.message}`, Code.InvalidArgument);
}

function unary(method: DescMethod, h: Handler, logger: Logger): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    if (call.request instanceof Undecodable) return callback(grpcError(badRequest(method, call.request)));
    let result: Promise<unknown>;
    try {
      result = h(call.request as never, new GrpcCall(call)) as Promise<unknown>;
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (res) => callback(null, res),
      (err: unknown) => callback(grpcError(toConnectError(err, logger))),
    );
  };
}

function serverStreaming(method: DescMethod, h: Handler, logger: Logger): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    if (call.request instanceof Undecodable) {
      call.emit("error", grpcError(badRequest(method, call.request)));
      return;
    }
    const ctx = new GrpcCall(call);
    const it = (h(call.request as never, ctx) as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    let finished = false;
    const finish = (err?: unknown) => {
      if (finished) return;
      finished = true;
      if (!call.cancelled) {
        if (err === undefined) call.end();
        else call.emit("error", grpcError(toConnectError(err, logger)));
      }
      Promise.resolve(it.return?.()).catch((e: unknown) => logger.warn({ err: (e as Error)?.message }, "grpc: ending a stream's handler failed"));
    };
    // A write in flight when the call is cancelled never calls back: the cancel ends the stream.
    call.once("cancelled", () => finish());
    // The next message is taken only once this one is written (HTTP/2 flow control let it out): a
    // slow reader holds up only its own stream, and its backlog waits in the feed's queue, where
    // it joins into one message and counts against the queue's bound, instead of piling up message
    // by message inside grpc-js (issue 28). Callbacks, not an async loop: at 10,000 streams every
    // promise per message is 10,000 more objects for the GC.
    const step = (r: IteratorResult<unknown>): void => {
      if (r.done || call.cancelled) return finish();
      try {
        call.write(r.value, pump);
      } catch (err) {
        finish(err);
      }
    };
    const pump = (): void => {
      try {
        it.next().then(step, finish);
      } catch (err) {
        finish(err);
      }
    };
    pump();
  };
}

export function addGrpcServices(server: grpc.Server, services: ServiceRoutes[], logger: Logger): void {
  for (const { service, handlers } of services) {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const m of service.methods) {
      const h = handlers[m.localName];
      if (!h) continue;
      switch (m.methodKind) {
        case "unary":
          impl[m.localName] = unary(m, h, logger);
          break;
        case "server_streaming":
          impl[m.localName] = serverStreaming(m, h, logger);
          break;
        case "client_streaming":
        case "bidi_streaming":
          throw new Error(`${service.typeName}.${m.name}: streaming requests are not supported by this adapter`);
        default: {
          const never: never = m.methodKind;
          throw new Error(`unknown method kind ${String(never)}`);
        }
      }
    }
    server.addService(grpcServiceDefinition(service), impl);
  }
}

/** What the admission interceptor admitted, by the call's metadata (grpc-js hands the handler the same object). */
const admittedBy = new WeakMap<grpc.Metadata, Admitted>();

/**
 * Admission before the body (see access.ts admission): grpc-js reads a request message only once
 * the metadata listener lets it, so a call refused here costs its headers.
 */
export function admissionInterceptor(services: ServiceRoutes[], logger: Logger): grpc.ServerInterceptor {
  const admits = new Map<string, Admit>();
  for (const r of services) {
    for (const m of r.service.methods) {
      const a = r.admit?.[m.localName];
      if (a) admits.set(`/${r.service.typeName}/${m.name}`, a);
    }
  }
  return (method, call) => {
    const admit = admits.get(method.path);
    if (!admit) return new grpc.ServerInterceptingCall(call);
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        const header = (name: string) => {
          const v = metadata.get(name)[0];
          return typeof v === "string" ? v : undefined;
        };
        admit(header, call.getPeer()).then(
          (admitted) => {
            admittedBy.set(metadata, admitted);
            next(metadata);
          },
          (err: unknown) => {
            const e = toConnectError(err, logger);
            call.sendStatus({ code: e.code as number as grpc.status, details: e.rawMessage });
          },
        );
      })
      .build();
    return new grpc.ServerInterceptingCall(call, new grpc.ResponderBuilder().withStart((next) => next(listener)).build());
  };
}

/** At most `max` calls of one method open at once (grpc.health.v1 Watch streams); beyond it RESOURCE_EXHAUSTED. */
export function concurrencyLimit(path: string, max: number, what: string): grpc.ServerInterceptor {
  let open = 0;
  return (method, call) => {
    if (method.path !== path) return new grpc.ServerInterceptingCall(call);
    let counted = false;
    const release = () => {
      if (counted) open--;
      counted = false;
    };
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (open >= max) {
          call.sendStatus({ code: grpc.status.RESOURCE_EXHAUSTED, details: `too many open ${what} (at most ${max} per server)` });
          return;
        }
        open++;
        counted = true;
        next(metadata);
      })
      .withOnCancel(release)
      .build();
    const responder = new grpc.ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendStatus((status, next) => {
        release();
        next(status);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}
