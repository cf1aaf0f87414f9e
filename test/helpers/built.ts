/** The compiled gateway (dist/) for the tests that run what ships: see scripts/harness/built.ts. */
export { ensureBuilt, repoRoot, shippedRuntimeEnv } from '../../scripts/harness/built';
