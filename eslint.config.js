// Lint rules, including the direction of the arrows (STYLE.md): the domain never imports the
// transport or the framework, and the client SDK stays publishable on its own.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const frameworkImports = ['@apollo/*', '@as-integrations/*', 'express', 'graphql', 'type-graphql'];

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      'src/generated/',
      'packages/*/src/generated/',
      'packages/*/dist/',
      '.data/',
      'coverage/',
      'test-artifacts/',
      'dist/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        NodeJS: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    files: [
      'src/idempotency/**',
      'src/charges/**',
      'src/ledger/**',
      'src/outbox/**',
      'src/acquirer/**',
      'src/merchants/**',
      'src/retry/**',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: frameworkImports, message: 'Domain code does not import the transport (STYLE.md).' },
            { group: ['**/graphql/*'], message: 'Domain code does not import src/graphql.' },
          ],
        },
      ],
    },
  },
  {
    // Scripts and benches ship with the repository's tooling; tests may use them, never the reverse.
    files: ['scripts/**', 'bench/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/test/**'], message: 'Scripts and benches do not import from test/: use scripts/harness/.' },
          ],
        },
      ],
    },
  },
  {
    // The platform (pools, Redis, HTTP, metrics registry, lifecycle) knows nothing of the domain;
    // each module registers its own metrics (docs/contract.md §7).
    files: ['src/platform/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '../acquirer/*',
                '../admin/*',
                '../charges/*',
                '../demo/*',
                '../graphql/*',
                '../idempotency/*',
                '../ledger/*',
                '../merchants/*',
                '../outbox/*',
                '../retry/*',
                '../errors',
                '../metrics',
                '../gateway',
              ],
              message: 'src/platform/ imports nothing from the domain.',
            },
          ],
        },
      ],
    },
  },
  {
    // The composition root is a list of small starters, each returning what it must stop: no
    // function there grows past a screen (70 lines, comments and blank lines included).
    files: ['src/gateway.ts', 'src/main.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 70, skipBlankLines: false, skipComments: false, IIFEs: true }],
    },
  },
  {
    // A GraphQL plugin runs around every operation; it must not reach into one resolver's module.
    files: ['src/graphql/plugins.ts', 'src/graphql/*-plugin.ts', 'src/graphql/plugins/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['./*-resolver', '../*-resolver'], message: 'A plugin does not import a resolver.' }] },
      ],
    },
  },
  {
    // The client SDK and the pure retry parts are packages of their own (packages/*, published
    // apart from the gateway): nothing of the server, and nothing outside their own folder.
    files: ['packages/*/src/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                'ioredis',
                'bullmq',
                'pino',
                'pg',
                'zod',
                '@prisma/*',
                '@apollo/server',
                '@apollo/server/*',
                'express',
                'type-graphql',
              ],
              message: 'The client SDK stays publishable on its own.',
            },
            {
              group: ['../*', '../../*', '**/src/*', '**/scripts/*', '**/test/*'],
              message: 'A package imports only its own files and its declared dependencies (never ../../src).',
            },
          ],
        },
      ],
    },
  },
  {
    // The retry algorithm is pure: no framework, no I/O, no other module at all. (The typescript-
    // eslint twin of the rule, so that it adds to the block above instead of replacing it.)
    files: ['packages/retry/src/**'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        { patterns: [{ regex: '^[^.]', message: 'packages/retry imports nothing: it is pure arithmetic.' }] },
      ],
    },
  },
  {
    // The server never depends on the client SDK: its runtime image installs no @apollo/client.
    // (The typescript-eslint twin of the rule, so the stricter blocks above keep theirs.)
    files: ['src/**'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@payments-gateway/client', '@payments-gateway/client/*', '@apollo/client', '@apollo/client/*'],
              message: 'The server does not import the client SDK or Apollo Client (dev dependencies).',
            },
          ],
        },
      ],
    },
  },
  {
    // One owner for the key's row (docs/contract.md §3): every statement that changes
    // idempotency_keys or writes idempotency_audit, and the lease's fencing predicate, live in
    // src/idempotency/key-row.ts, so no copy of the fence can drift.
    files: ['src/**/*.ts'],
    ignores: ['src/idempotency/key-row.ts', 'src/generated/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector:
            'TemplateElement[value.raw=/(UPDATE|INSERT\\s+INTO|DELETE\\s+FROM)\\s+idempotency_(keys|audit)\\b|lock_token\\s*=/i]',
          message: 'Only src/idempotency/key-row.ts writes idempotency_keys and idempotency_audit.',
        },
        {
          selector:
            'CallExpression[callee.object.property.name=/^idempotency(Key|Audit)$/][callee.property.name=/^(create|update|upsert|delete)/]',
          message: 'Only src/idempotency/key-row.ts writes idempotency_keys and idempotency_audit.',
        },
      ],
    },
  },
);
