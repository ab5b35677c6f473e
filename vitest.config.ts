import { defineConfig } from "vitest/config";

// Under CI a JSON report is written as well, so .ci/run can add the counts of every suite.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/setup.ts"],
    pool: "threads",
    testTimeout: 60_000,
    reporters: process.env.CI
      ? ["default", ["json", { outputFile: "test-results/vitest.json" }]]
      : ["default"],
  },
});
