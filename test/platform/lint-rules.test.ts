/**
 * The direction of the imports, enforced by eslint (eslint.config.js): platform never imports the
 * domain, a GraphQL plugin never imports a resolver, scripts and benches never import test/.
 */
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint();

async function restricted(filePath: string, source: string): Promise<boolean> {
  const [result] = await eslint.lintText(source, { filePath });
  return (result?.messages ?? []).some((message) => message.ruleId === 'no-restricted-imports');
}

describe('the import rules', () => {
  it.each([
    ['src/platform/example.ts', "import { ChargeService } from '../charges/create-charge';\nvoid ChargeService;\n"],
    ['src/platform/example.ts', "import { createMetrics } from '../metrics';\nvoid createMetrics;\n"],
    ['src/graphql/plugins.ts', "import { ChargeResolver } from './charge-resolver';\nvoid ChargeResolver;\n"],
    ['scripts/example.ts', "import { waitFor } from '../test/helpers/ledger';\nvoid waitFor;\n"],
    ['bench/example.ts', "import { waitFor } from '../test/helpers/ledger';\nvoid waitFor;\n"],
  ])('refuse %s importing across the line', async (filePath, source) => {
    expect(await restricted(filePath, source)).toBe(true);
  });

  it('allow what stays on its side', async () => {
    expect(
      await restricted('src/platform/example.ts', "import { createLogger } from './logger';\nvoid createLogger;\n"),
    ).toBe(false);
    expect(
      await restricted(
        'src/graphql/plugins.ts',
        "import { requireMerchant } from './context';\nvoid requireMerchant;\n",
      ),
    ).toBe(false);
  });
});
