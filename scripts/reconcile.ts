/**
 * Reconciles the database from facts (docs/contract.md §7) and says whether it is healthy.
 *   npm run -s reconcile -- [--json] [--grace-ms <ms>]
 * Exit status: 0 healthy, 1 unhealthy (some fact is non-empty, something is missing or
 * duplicated, or the ledger does not balance), 2 when it could not reconcile at all.
 * The grace defaults to RECONCILIATION_GRACE_MS: only rows older than it count.
 */
import { parseArgs } from 'node:util';
import { loadConfigOrExit } from '../src/main';
import { reconcileFully, reconciliationIssueKinds } from '../src/admin/reconciliation';
import { openDatabase } from '../src/platform/database';

const { values } = parseArgs({
  options: { json: { type: 'boolean', default: false }, 'grace-ms': { type: 'string' } },
});
const config = loadConfigOrExit();
const graceText = values['grace-ms'];
const graceMs = graceText === undefined ? config.reconciliationGraceMs : Number(graceText);
if (!Number.isSafeInteger(graceMs) || graceMs < 0) {
  process.stderr.write('--grace-ms: must be a whole number of milliseconds, 0 or more\n');
  process.exit(2);
}
const database = openDatabase({ ...config, databasePoolSizeMax: 1 });
try {
  const result = await reconcileFully(database.prisma, graceMs);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ graceMs, ...result })}\n`);
  } else {
    process.stdout.write(`${result.healthy ? 'healthy' : 'UNHEALTHY'} (rows older than ${graceMs} ms)\n`);
    for (const kind of reconciliationIssueKinds) {
      const ids = result[kind];
      process.stdout.write(`  ${kind}: ${ids.length}${ids.length > 0 ? ` (${ids.slice(0, 5).join(', ')}…)` : ''}\n`);
    }
  }
  process.exitCode = result.healthy ? 0 : 1;
} catch (error) {
  process.stderr.write(`Could not reconcile: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 2;
} finally {
  await database.close();
}
