import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Where client commands go without --url or AGENTID_URL: agentid's HTTP port on this machine. */
export const DEFAULT_URL = "http://127.0.0.1:8080";

/** The version in agentid's package.json, found upwards from this module (src/ or the dist/ bundle). */
export function version(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "agentid" && pkg.version) return pkg.version;
    } catch {
      // No package.json here; keep looking.
    }
    const up = dirname(dir);
    if (up === dir) return "unknown";
    dir = up;
  }
}
