import { loadConfig, ConfigError } from "../server/config.js";
import { createAppContext } from "../server/context.js";
import { startServer } from "../server/server.js";
import { DatabaseUnreachableError } from "../store/open.js";
import { EmbeddedPostgresError } from "../store/embedded.js";

/** `agentid serve`: run until SIGTERM or SIGINT, then shut down gracefully. */
export async function serve(): Promise<void> {
  let server;
  let createdAdminKey: string | undefined;
  try {
    const config = loadConfig();
    const ctx = await createAppContext(config);
    createdAdminKey = ctx.createdAdminKey;
    server = await startServer(ctx).catch(async (err) => {
      await ctx.close();
      throw err;
    });
  } catch (err) {
    const known = err instanceof ConfigError || err instanceof DatabaseUnreachableError || err instanceof EmbeddedPostgresError;
    process.stderr.write(`agentid: cannot start: ${(err as Error).message}\n`);
    if (!known && process.env.LOG_LEVEL === "debug") process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  }
  if (createdAdminKey) {
    // Shown once, on the terminal only: logs never carry secrets.
    process.stderr.write(
      `\nagentid: created the first admin API key. It is shown only this once; keep it safe:\n\n    ${createdAdminKey}\n\n` +
        `Use it as AGENTID_API_KEY for the CLI, or set AGENTID_ADMIN_KEY to choose your own.\n\n`,
    );
  }
  const running = server;
  const stop = () => {
    running.shutdown().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}
