import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { AppContext } from "./context.js";
import { addGrpcServices, admissionInterceptor, concurrencyLimit } from "./grpc.js";
import { createHttpServer } from "./http.js";
import { addReflection } from "./reflection.js";
import { routes } from "./services.js";
import { createExtAuthz } from "./ext-authz.js";
import { followDatabaseHealth } from "./health.js";
import { plainRoutes } from "./plain-routes.js";
import { defaultIssuer } from "./oauth-token.js";

export interface RunningServer {
  grpcPort: number;
  httpPort: number;
  /** The OAuth issuer (AGENTID_ISSUER, or the HTTP port's address). */
  issuer: string;
  /** Stops accepting, ends open streams cleanly, then closes the context (pool, feed). */
  shutdown(): Promise<void>;
}

const GRACE_MS = 5000;

export async function startServer(ctx: AppContext): Promise<RunningServer> {
  const { config, logger } = ctx;
  // Envoy's Check sits beside agentid's own services: one list for both transports, health and reflection.
  const extAuthz = createExtAuthz(ctx);
  const services = [...routes(ctx), extAuthz.routes];
  ctx.metrics?.followVerifiers(extAuthz.verifiers);

  const grpcServer = new grpc.Server({
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    // A message is bounded on the wire and after decompression (grpc-js checks both).
    "grpc.max_receive_message_length": config.maxRequestBytes,
    "grpc.max_concurrent_streams": config.http2MaxConcurrentStreams,
    // A connection with no call in flight (an open watch stream is one) is closed after this.
    "grpc.max_connection_idle_ms": config.idleTimeoutMs,
    // Channelz (grpc-js's per-call and per-message bookkeeping for its debugging service) is not
    // served here; it cost a few percent of every call and of every message to 10,000 streams.
    "grpc.enable_channelz": 0,
    interceptors: [
      admissionInterceptor(services, logger),
      concurrencyLimit("/grpc.health.v1.Health/Watch", config.maxHealthWatchers, "health Watch streams"),
    ],
  });
  addGrpcServices(grpcServer, ctx.metrics?.instrument(services, "grpc") ?? services, logger);
  const health = new HealthImplementation({ "": "SERVING" });
  for (const s of services) health.setStatus(s.service.typeName, "SERVING");
  health.addToServer(grpcServer);
  const stopHealth = followDatabaseHealth(
    { databaseUrl: ctx.databaseUrl, logger, retryMs: config.healthIntervalMs },
    health,
    services.map((s) => s.service.typeName),
  );
  addReflection(grpcServer, services.map((s) => s.service));
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(`${config.host}:${config.grpcPort}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(new Error(`cannot listen for gRPC on ${config.host}:${config.grpcPort}: ${err.message}`)) : resolve(port),
    ),
  );

  let issuer = config.issuer;
  const http = createHttpServer(ctx, ctx.metrics?.instrument(services, "connect") ?? services, plainRoutes(ctx, () => issuer));
  const httpPort = await new Promise<number>((resolve, reject) => {
    http.server.once("error", (err) =>
      reject(new Error(`cannot listen for HTTP on ${config.host}:${config.httpPort}: ${err.message}`)),
    );
    http.server.listen(config.httpPort, config.host, () => {
      const addr = http.server.address();
      resolve(typeof addr === "object" && addr ? addr.port : config.httpPort);
    });
  });
  issuer ||= defaultIssuer(config.host, httpPort);
  logger.info({ grpcPort, httpPort, host: config.host, issuer }, "agentid serving");

  let stopping: Promise<void> | undefined;
  return {
    grpcPort,
    httpPort,
    issuer,
    shutdown() {
      stopping ??= (async () => {
        logger.info("shutting down");
        await stopHealth();
        health.setStatus("", "NOT_SERVING");
        const grpcDone = new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
        const httpDone = http.close();
        // Ending the feed ends every watch stream with OK; clients resume elsewhere.
        await ctx.feed.close();
        const timer = setTimeout(() => grpcServer.forceShutdown(), GRACE_MS);
        await Promise.all([grpcDone, httpDone, extAuthz.close()]);
        clearTimeout(timer);
        await ctx.close();
        logger.info("stopped");
      })();
      return stopping;
    },
  };
}
