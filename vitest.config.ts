import { defineConfig } from "vitest/config";
import { systemPostgresBin } from "./bench/lib/system-postgres.js";

// The suites of the revocation log (the feed's, the sequencer's, the log reads) run twice: on the
// embedded PostgreSQL, and on the system's (Debian's, with JIT on as most servers have it), which
// planned one read 500 times slower than the embedded build (issue 28). Without a system
// PostgreSQL, only the first; .ci/run installs one.
const LOG_SUITES = ["test/feed*.test.ts", "test/sequencer.test.ts", "test/log-reads.test.ts"];
const system = systemPostgresBin();
if (!system) console.warn("no system PostgreSQL (apt-get install postgresql): the log's suites run on the embedded one only");

export default defineConfig({
  test: {
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Suites share one PostgreSQL server per project (a database each); two cores run two suites at once.
    fileParallelism: true,
    maxWorkers: 2,
    // .ci/run asks for a JSON copy of the results to print its closing count.
    reporters: process.env.AGENTID_TEST_RESULTS ? ["default", "json"] : ["default"],
    outputFile: process.env.AGENTID_TEST_RESULTS ? { json: process.env.AGENTID_TEST_RESULTS } : undefined,
    projects: [
      { extends: true, test: { name: "embedded", include: ["test/**/*.test.ts"] } },
      ...(system
        ? [{ extends: true as const, test: { name: "system-postgres", include: LOG_SUITES, env: { AGENTID_TEST_POSTGRES: "system" } } }]
        : []),
    ],
  },
});
