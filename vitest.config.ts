import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    globalSetup: ["test/support/global-setup.ts"],
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Suites share one PostgreSQL server (a database each); two cores run two suites at once.
    fileParallelism: true,
    maxWorkers: 2,
    // .ci/run asks for a JSON copy of the results to print its closing count.
    reporters: process.env.AGENTID_TEST_RESULTS ? ["default", "json"] : ["default"],
    outputFile: process.env.AGENTID_TEST_RESULTS ? { json: process.env.AGENTID_TEST_RESULTS } : undefined,
  },
});
