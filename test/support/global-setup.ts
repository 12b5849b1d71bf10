import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../bench/lib/cluster.js";
import type { TestProject } from "vitest/node";

export { freePort };
import { startEmbeddedPostgres } from "../../src/store/embedded.js";
import { startSystemPostgres } from "../../bench/lib/system-postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A server URL whose user may create databases; each suite makes its own. */
    pgAdminUrl: string;
  }
}

/**
 * One real PostgreSQL per project of the run: DATABASE_URL if set, else one in a temp folder, the
 * embedded build or, for the project that asks for it (AGENTID_TEST_POSTGRES=system in its env),
 * the system's.
 */
export default async function setup(project: TestProject) {
  if (process.env.DATABASE_URL) {
    project.provide("pgAdminUrl", process.env.DATABASE_URL);
    return;
  }
  const dataDir = await mkdtemp(join(tmpdir(), "agentid-test-"));
  // As root, PostgreSQL runs as a "postgres" user that must be able to enter the folder.
  await chmod(dataDir, 0o755);
  const port = await freePort();
  const pg =
    project.config.env?.AGENTID_TEST_POSTGRES === "system" ? await startSystemPostgres(dataDir, port) : await startEmbeddedPostgres({ dataDir, port });
  project.provide("pgAdminUrl", pg.url);
  return async () => {
    await pg.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
}
