/**
 * `npm start`: everything a fresh clone needs to run the gateway locally (docs/contract.md §8).
 *   1. Postgres and Redis: the configured ones if reachable; otherwise docker compose where an
 *      engine runs; otherwise private instances from local binaries under .data/; otherwise a
 *      clear message with the install command.
 *   2. Migrations (dbmate, plain SQL), as the owner (MIGRATION_DATABASE_URL); they create the
 *      gateway's least-privilege role, which everything after connects as (DATABASE_URL).
 *   3. Outside production: the checkout demo's script (bundled), the demo merchant, its API key
 *      and a curl to paste.
 *   4. The gateway itself, in the role ROLE says (default all).
 */
import 'reflect-metadata';
import { loadConfig, ConfigError, type Config } from '../src/config';
import { run } from '../src/main';
import { ensureDemoMerchant } from '../src/merchants/merchants';
import { openDatabase } from '../src/platform/database';
import { onServerOf, setGatewayRolePassword } from '../src/platform/database-role';
import { buildDemo } from './build-demo';
import { ensureServices } from './ensure-services';
import { migrate } from '../src/cli/migrate';

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function prepare(): Promise<Config> {
  const initial = loadConfig();
  // Production never starts or installs services (scripts/start.sh runs dist/main.js there);
  // should this file be run in production anyway, the gateway's own reachability check decides.
  if (initial.isProduction) return initial;
  // Services are found, and migrations applied, as the owner (MIGRATION_DATABASE_URL); the gateway
  // then runs as its least-privilege role (DATABASE_URL), on whichever server was found.
  const services = await ensureServices({
    databaseUrl: initial.migrationDatabaseUrl,
    redisUrl: initial.redisUrl,
    log: say,
  });
  process.env.MIGRATION_DATABASE_URL = services.databaseUrl;
  process.env.DATABASE_URL = onServerOf(initial.databaseUrl, services.databaseUrl);
  process.env.REDIS_URL = services.redisUrl;
  const config = loadConfig();
  migrate(config.migrationDatabaseUrl);
  await setGatewayRolePassword(config.migrationDatabaseUrl, config.databaseUrl);
  await buildDemo();
  const apiKey = await printDemoMerchant(config);
  // The gateway serves the /demo checkout page with this key.
  process.env.DEMO_MERCHANT_API_KEY = apiKey;
  return loadConfig();
}

async function printDemoMerchant(config: Config): Promise<string> {
  const database = openDatabase({ ...config, databasePoolSizeMax: 1 });
  try {
    const { merchant, apiKey } = await ensureDemoMerchant(database.prisma, config.demoMerchantApiKey);
    const url = `http://localhost:${config.port}/graphql`;
    const body = JSON.stringify({
      query:
        'mutation($input: CreateChargeInput!) { createCharge(input: $input) { id amount currency status createdAt } }',
      variables: { input: { amount: 1999, currency: 'USD', source: 'tok_visa', description: 'First charge' } },
    });
    say('');
    say(`Demo merchant ${merchant.id}. API key: ${apiKey}`);
    say(`Apollo Sandbox: ${url} (set the Authorization and Idempotency-Key headers)`);
    say(`Checkout demo: http://localhost:${config.port}/demo`);
    say('Charge it:');
    say(
      `  curl -s ${url} -H 'content-type: application/json' -H 'authorization: Bearer ${apiKey}' ` +
        `-H "idempotency-key: $(uuidgen 2>/dev/null || date +%s%N)" -d '${body}'`,
    );
    say('');
    return apiKey;
  } finally {
    await database.close();
  }
}

try {
  await run(await prepare());
} catch (error) {
  say(
    error instanceof ConfigError
      ? `Configuration error: ${error.message}`
      : `Could not start: ${error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
}
