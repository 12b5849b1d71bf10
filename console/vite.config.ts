import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The console is built into console/dist and served by agentid under /console/
// (src/server/console-static.ts). Preact's JSX runtime through Vite's own transformer: no plugin.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/console/",
  logLevel: "warn",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // The budget is 250 kB gzipped; fail the build well before a dependency sneaks past it.
    chunkSizeWarningLimit: 600,
  },
});
