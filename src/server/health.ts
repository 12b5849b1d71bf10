import { sql } from "kysely";
import type { HealthImplementation } from "grpc-health-check";
import type { AppContext } from "./context.js";

/**
 * grpc.health.v1 follows the database: NOT_SERVING for the server ("") and every mounted service
 * while a ping fails, SERVING again once it answers. Load balancers and Kubernetes probes then
 * route around a replica that cannot reach PostgreSQL. Returns a function that stops the pings.
 */
export function followDatabaseHealth(ctx: AppContext, health: HealthImplementation, services: readonly string[], everyMs = 2000): () => void {
  let serving = true;
  let stopped = false;
  const set = (up: boolean) => {
    if (stopped || up === serving) return;
    serving = up;
    for (const name of ["", ...services]) health.setStatus(name, up ? "SERVING" : "NOT_SERVING");
    if (up) ctx.logger.info("health: database reachable again; SERVING");
    else ctx.logger.warn("health: database unreachable; NOT_SERVING");
  };
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    sql`select 1`
      .execute(ctx.db)
      .then(
        () => set(true),
        () => set(false),
      )
      .finally(() => (running = false));
  }, everyMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
