/**
 * The direction of the imports, enforced by eslint (eslint.config.js): platform never imports the
 * domain, a GraphQL plugin never imports a resolver, scripts and benches never import test/, the
 * packages (the client SDK, the pure retry parts) never import the server or outside themselves,
 * and the server never imports the client SDK.
 */
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint();

async function restricted(filePath: string, source: string): Promise<boolean> {
  const [result] = await eslint.lintText(source, { filePath });
  return (result?.messages ?? []).some(
    (message) =>
      message.ruleId === 'no-restricted-imports' || message.ruleId === '@typescript-eslint/no-restricted-imports',
  );
}

describe('the import rules', () => {
  it.each([
    ['src/platform/example.ts', "import { ChargeService } from '../charges/create-charge';\nvoid ChargeService;\n"],
    ['src/platform/example.ts', "import { createMetrics } from '../metrics';\nvoid createMetrics;\n"],
    ['src/graphql/plugins.ts', "import { ChargeResolver } from './charge-resolver';\nvoid ChargeResolver;\n"],
    ['scripts/example.ts', "import { waitFor } from '../test/helpers/ledger';\nvoid waitFor;\n"],
    ['bench/example.ts', "import { waitFor } from '../test/helpers/ledger';\nvoid waitFor;\n"],
    ['packages/client/src/example.ts', "import { loadConfig } from '../../../src/config';\nvoid loadConfig;\n"],
    ['packages/client/src/example.ts', "import { Redis } from 'ioredis';\nvoid Redis;\n"],
    ['packages/client/src/example.ts', "import { ApolloServer } from '@apollo/server';\nvoid ApolloServer;\n"],
    ['packages/retry/src/example.ts', "import { print } from 'graphql';\nvoid print;\n"],
    ['packages/retry/src/example.ts', "import { take } from '../../client/src/index.js';\nvoid take;\n"],
    ['src/charges/example.ts', "import { GatewayClient } from '@payments-gateway/client';\nvoid GatewayClient;\n"],
    ['src/gateway.ts', "import { ApolloClient } from '@apollo/client';\nvoid ApolloClient;\n"],
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
    expect(
      await restricted(
        'packages/client/src/example.ts',
        "import { RetryBudget } from '@payments-gateway/retry';\nimport { print } from 'graphql';\nimport { x } from './generated/graphql.js';\nvoid [RetryBudget, print, x];\n",
      ),
    ).toBe(false);
    expect(
      await restricted('packages/retry/src/example.ts', "import { take } from './token-bucket.js';\nvoid take;\n"),
    ).toBe(false);
    expect(
      await restricted(
        'src/outbox/example.ts',
        "import { RetryBudget } from '@payments-gateway/retry';\nvoid RetryBudget;\n",
      ),
    ).toBe(false);
  });

  it('keep every function of the composition root within 70 lines', async () => {
    const body = (lines: number) => Array.from({ length: lines - 2 }, (_, index) => `  void ${index};`).join('\n');
    const lengthErrors = async (lines: number) => {
      const [result] = await eslint.lintText(`export function starter(): void {\n${body(lines)}\n}\n`, {
        filePath: 'src/gateway.ts',
      });
      return (result?.messages ?? []).filter((message) => message.ruleId === 'max-lines-per-function').length;
    };
    expect(await lengthErrors(70)).toBe(0);
    expect(await lengthErrors(71)).toBe(1);
  });
});
