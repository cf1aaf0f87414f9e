/**
 * Creates a merchant and prints its API key once.
 *   npm run -s merchant:create -- --name "Acme" [--json]      (tsx, from the sources)
 *   node dist/cli/merchant-create.js --name "Acme" [--json]     (compiled: the runtime image)
 * With --json it prints {"id": "...", "apiKey": "..."} and nothing else on stdout.
 */
import { parseArgs } from 'node:util';
import { loadConfigOrExit } from '../main';
import { createMerchant } from '../merchants/merchants';
import { openDatabase } from '../platform/database';

const { values } = parseArgs({ options: { name: { type: 'string' }, json: { type: 'boolean', default: false } } });
if (values.name === undefined || values.name.trim() === '') {
  process.stderr.write('Usage: npm run -s merchant:create -- --name <name> [--json]\n--name is required.\n');
  process.exit(2);
}
const config = loadConfigOrExit();
const database = openDatabase({ ...config, databasePoolSizeMax: 1 });
try {
  const created = await createMerchant(database.prisma, values.name);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ id: created.merchant.id, apiKey: created.apiKey })}\n`);
  } else {
    process.stdout.write(
      `Merchant ${created.merchant.name} (${created.merchant.id})\nAPI key, shown once: ${created.apiKey}\n`,
    );
  }
} catch (error) {
  process.stderr.write(`Could not create the merchant: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
} finally {
  await database.close();
}
