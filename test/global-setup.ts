/**
 * Runs once before all test files: makes sure Postgres and Redis are reachable (starting private
 * instances if not, as `npm start` does) and builds the template database that every test file
 * copies. The template is ours (its name says so); nothing else is dropped.
 */
import type { TestProject } from 'vitest/node';
import { buildDemo } from '../scripts/build-demo';
import { ensureServices } from '../scripts/ensure-services';
import { migrate, migrationUrls } from '../src/cli/migrate';
import { adminQuery, withDatabase } from './helpers/database';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // One template per test run, so runs on the same server do not drop each other's.
  const templateDatabaseName = `pgw_test_template_${process.pid}`;
  const services = await ensureServices({
    // The owner: it creates and migrates the template (gateways under test connect as their role).
    databaseUrl: migrationUrls().ownerUrl,
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    log: () => undefined,
  });
  const templateUrl = withDatabase(services.databaseUrl, templateDatabaseName);
  await adminQuery(services.databaseUrl, `DROP DATABASE IF EXISTS ${templateDatabaseName} WITH (FORCE)`);
  process.env.MIGRATE_QUIET = '1';
  migrate(templateUrl);
  // The checkout page's script is bundled at build time; its tests serve the bundle.
  await buildDemo();
  project.provide('databaseUrl', services.databaseUrl);
  project.provide('redisUrl', services.redisUrl);
  project.provide('templateDatabaseName', templateDatabaseName);
  return async () => {
    await adminQuery(services.databaseUrl, `DROP DATABASE IF EXISTS ${templateDatabaseName} WITH (FORCE)`);
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string;
    templateDatabaseName: string;
  }
}
