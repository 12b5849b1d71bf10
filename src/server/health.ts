import pg from "pg";
import type { HealthImplementation } from "grpc-health-check";
import type { Logger } from "pino";

/**
 * grpc.health.v1 follows the database: NOT_SERVING for the server ("") and every mounted service
 * while PostgreSQL is unreachable, SERVING again once it answers, so load balancers and Kubernetes
 * probes route around a replica that cannot reach it.
 *
 * Without polling: one idle connection (TCP keepalive on) is held open, and PostgreSQL ends it on
 * shutdown or a network failure ends it, which is the signal. Only while the database is away
 * does it retry, every `retryMs`. An idle, healthy replica sends nothing for this.
 */
export function followDatabaseHealth(
  o: { databaseUrl: string; logger: Logger; retryMs: number },
  health: HealthImplementation,
  services: readonly string[],
): () => Promise<void> {
  let serving = true;
  let stopped = false;
  let client: pg.Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  const set = (up: boolean) => {
    if (stopped || up === serving) return;
    serving = up;
    for (const name of ["", ...services]) health.setStatus(name, up ? "SERVING" : "NOT_SERVING");
    if (up) o.logger.info("health: database reachable again; SERVING");
    else o.logger.warn("health: database unreachable; NOT_SERVING");
  };
  const lost = (c: pg.Client) => {
    if (client !== c) return;
    client = undefined;
    c.end().catch(() => {});
    set(false);
    retry();
  };
  const retry = () => {
    if (stopped) return;
    timer = setTimeout(() => void connect(), o.retryMs);
    timer.unref();
  };
  const connect = async () => {
    if (stopped) return;
    const c = new pg.Client({ connectionString: o.databaseUrl, keepAlive: true, connectionTimeoutMillis: 10_000 });
    c.on("error", () => lost(c));
    c.on("end", () => lost(c));
    try {
      await c.connect();
    } catch {
      c.end().catch(() => {});
      set(false);
      retry();
      return;
    }
    if (stopped) {
      await c.end().catch(() => {});
      return;
    }
    client = c;
    set(true);
  };
  void connect();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    const c = client;
    client = undefined;
    await c?.end().catch(() => {});
  };
}
