/**
 * Runs a bench against a private Postgres cluster with pg_stat_statements, then prints what each
 * statement cost: `npx tsx bench/pg-statements.ts npx tsx bench/relay.ts`. The cluster is made
 * here (scripts/harness/private-postgres.ts, never the shared server) and removed at the end; the
 * command gets it as DATABASE_URL. Calls and time are summed over every database of the cluster.
 */
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { startPrivatePostgres } from '../scripts/harness/private-postgres';

const command = process.argv.slice(2);
if (command.length === 0) throw new Error('usage: npx tsx bench/pg-statements.ts <command…>');
const cluster = await startPrivatePostgres({
  shared_preload_libraries: 'pg_stat_statements',
  'pg_stat_statements.track': 'all',
});
try {
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  await admin.query('SELECT pg_stat_statements_reset()');
  const run = spawnSync(command[0]!, command.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, DATABASE_URL: `postgresql://postgres@127.0.0.1:${cluster.port}/payments` },
  });
  const rows = await admin.query<{ calls: string; total_ms: number; mean_ms: number; rows: string; query: string }>(
    `SELECT calls::text, total_exec_time AS total_ms, mean_exec_time AS mean_ms, rows::text,
            regexp_replace(left(query, 160), '\\s+', ' ', 'g') AS query
       FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15`,
  );
  process.stdout.write('\npg_stat_statements (private cluster), by total execution time\n');
  process.stdout.write('calls     total ms  mean ms  rows      statement\n');
  for (const row of rows.rows) {
    process.stdout.write(
      `${row.calls.padEnd(8)}  ${row.total_ms.toFixed(0).padStart(8)}  ${row.mean_ms.toFixed(3).padStart(7)}  ${row.rows.padEnd(8)}  ${row.query}\n`,
    );
  }
  await admin.end();
  process.exitCode = run.status ?? 1;
} finally {
  await cluster.destroy();
}
