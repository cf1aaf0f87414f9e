// Lint rules, including the direction of the arrows (STYLE.md): the domain never imports the
// transport or the framework, and the client SDK stays publishable on its own.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const frameworkImports = ['@apollo/*', '@as-integrations/*', 'express', 'graphql', 'type-graphql'];

export default tseslint.config(
  { ignores: ['node_modules/', 'src/generated/', '.data/', 'coverage/', 'test-artifacts/', 'dist/'] },
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
    // Scripts ship with the repository's tooling; tests may use them, never the reverse.
    files: ['scripts/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/test/**'], message: 'Scripts do not import from test/: use scripts/harness/.' }] },
      ],
    },
  },
  {
    files: ['src/client/**'],
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
                '@prisma/*',
                '@apollo/server',
                '@apollo/server/*',
                'express',
                'type-graphql',
              ],
              message: 'The client SDK stays publishable on its own.',
            },
            {
              group: [
                '../platform/*',
                '../idempotency/*',
                '../charges/*',
                '../ledger/*',
                '../outbox/*',
                '../graphql/*',
                '../config',
                '../errors',
              ],
              message: 'The client SDK imports only the pure parts of retry/.',
            },
          ],
        },
      ],
    },
  },
);
