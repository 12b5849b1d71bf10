import { loadConfig, ConfigError, type Config } from "../server/config.js";
import { createAppContext, type AppContext } from "../server/context.js";
import { startServer } from "../server/server.js";
import { adminKeyPath, dropAdminKey, keptAdminKey } from "../server/bootstrap-key.js";
import { DatabaseUnreachableError } from "../store/open.js";
import { EmbeddedPostgresError } from "../store/embedded.js";

/** `agentid serve`: run until SIGTERM or SIGINT, then shut down gracefully. */
export async function serve(): Promise<void> {
  let server;
  let config: Config | undefined;
  let ctx: AppContext | undefined;
  try {
    config = loadConfig();
    const c = (ctx = await createAppContext(config));
    server = await startServer(c).catch(async (err) => {
      await c.close();
      throw err;
    });
  } catch (err) {
    const known = err instanceof ConfigError || err instanceof DatabaseUnreachableError || err instanceof EmbeddedPostgresError;
    process.stderr.write(`agentid: cannot start: ${(err as Error).message}\n`);
    if (!known && process.env.LOG_LEVEL === "debug") process.stderr.write(`${(err as Error).stack}\n`);
    if (config && (await keptAdminKey(config.dataDir))) {
      process.stderr.write(`agentid: the first admin API key is kept in ${adminKeyPath(config.dataDir)} until a start succeeds\n`);
    }
    process.exit(1);
  }
  await surfaceAdminKey(ctx, config);
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

/**
 * The first admin key, kept in the data folder since its creation (see bootstrap-key.ts), is shown
 * once the server is up. On a terminal it is printed and the file removed; otherwise (a process
 * manager's log) it stays in the file, readable by its owner only, and only the file's path is
 * logged. Logs never carry secrets. A kept key that no longer works is removed silently.
 */
async function surfaceAdminKey(ctx: AppContext, config: Config): Promise<void> {
  const secret = await keptAdminKey(config.dataDir);
  if (!secret) return;
  // The server checking its own kept key: no peer to rate-limit.
  const valid = await ctx.auth.authenticate(`Bearer ${secret}`, undefined).then(
    (c) => c?.kind === "key" && c.role === "admin",
    () => false,
  );
  if (!valid) return dropAdminKey(config.dataDir);
  if (process.stderr.isTTY) {
    process.stderr.write(
      `\nagentid: created the first admin API key. It is shown only this once; keep it safe:\n\n    ${secret}\n\n` +
        `Use it as AGENTID_API_KEY for the CLI, or set AGENTID_ADMIN_KEY to choose your own.\n\n`,
    );
    await dropAdminKey(config.dataDir);
    return;
  }
  ctx.logger.warn(
    { file: adminKeyPath(config.dataDir) },
    "the first admin API key is in this file, readable by its owner only: store it safely, then delete the file",
  );
}
