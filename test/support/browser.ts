// Debian's Chromium through playwright-core: no browser download (none is possible here).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";

/** The Chromium to drive: AGENTID_CHROMIUM, or Debian's. undefined when none is installed. */
export function chromiumPath(): string | undefined {
  const candidates = [process.env.AGENTID_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter((p): p is string => !!p);
  return candidates.find((p) => existsSync(p));
}

export function launchChromium(executablePath: string): Promise<Browser> {
  // Playwright gives each launch a fresh profile in a temporary folder. Background networking
  // is off: connections to the outside are refused here, in bulk.
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--disable-gpu",
      "--no-first-run",
    ],
  });
}

/** Builds the console if this checkout has not (npm ci does it through `prepare`). */
export function ensureConsoleBuilt(): void {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  if (existsSync(`${root}console/dist/index.html`)) return;
  execFileSync("npm", ["run", "build:console"], { cwd: root, stdio: "inherit" });
}
