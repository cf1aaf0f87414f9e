import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

const require = createRequire(import.meta.url);
const source = (file: string) => fileURLToPath(new URL(file, import.meta.url));

/**
 * The simulator's CI schedules (test/simulation/ci-schedules.test.ts) take minutes in one file:
 * started first, they run beside the rest of the suite on the other worker instead of after it.
 * Otherwise vitest's own order (failed first, then longest, or largest when it has no timings).
 */
const longestFirst = ['test/simulation/ci-schedules.test.ts'];
class SimulationFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const first = (file: TestSpecification) => longestFirst.some((name) => file.moduleId.endsWith(name));
    return [...sorted.filter(first), ...sorted.filter((file) => !first(file))];
  }
}

export default defineConfig({
  resolve: {
    alias: [
      // One copy of graphql: type-graphql and Apollo load its CommonJS build, so our code must too,
      // or graphql-js sees two realms and refuses the schema (docs/contract.md §10).
      { find: /^graphql$/, replacement: require.resolve('graphql') },
      // The workspace packages from their sources, as tsconfig.json's paths say (exact matches, so
      // `@payments-gateway/client/apollo` is not read as `@payments-gateway/client` + `/apollo`).
      { find: /^@payments-gateway\/retry$/, replacement: source('./packages/retry/src/index.ts') },
      { find: /^@payments-gateway\/client$/, replacement: source('./packages/client/src/index.ts') },
      { find: /^@payments-gateway\/client\/apollo$/, replacement: source('./packages/client/src/apollo-link.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup.ts'],
    pool: 'forks',
    // Two cores: two test files at a time. Each file has its own database and Redis prefix.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    sequence: { sequencer: SimulationFirstSequencer },
  },
});
