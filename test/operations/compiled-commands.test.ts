/**
 * The runtime image has production dependencies only (npm ci --omit=dev: no tsx, no esbuild), so
 * what it runs must be compiled: the gateway, the migrations and merchant creation, from dist/.
 * Here they run as the image runs them, against a database that does not exist yet, and every
 * package they load is checked to be a runtime dependency.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ensureBuilt, repoRoot, shippedRuntimeEnv } from '../helpers/built';
import { adminQuery, withDatabase } from '../helpers/database';

const run = promisify(execFile);
const databaseName = `pgw_t_compiled_${process.pid}`;
const databaseUrl = withDatabase(inject('databaseUrl'), databaseName);
const compiledEntryPoints = ['dist/main.js', 'dist/cli/migrate.js', 'dist/cli/merchant-create.js'];

function node(script: string, args: string[]) {
  // Only what the image sets: no tsx loader, no NODE_OPTIONS from the test runner.
  const env = { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent', MIGRATE_QUIET: '1' };
  return run('node', [script, ...args], { cwd: repoRoot, env, encoding: 'utf8' });
}

async function count(sql: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return Number((await client.query<{ count: string }>(sql)).rows[0]!.count);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await adminQuery(inject('databaseUrl'), `DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
  ensureBuilt();
}, 300_000);
afterAll(async () => {
  await adminQuery(inject('databaseUrl'), `DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
});

describe('the compiled commands', () => {
  it('node dist/cli/migrate.js up creates the database and applies every migration', async () => {
    await node('dist/cli/migrate.js', ['up']);
    const migrations = readdirSync(path.join(repoRoot, 'db', 'migrations')).filter((file) => file.endsWith('.sql'));
    expect(migrations.length).toBeGreaterThan(0);
    expect(await count('SELECT count(*) FROM schema_migrations')).toBe(migrations.length);
    expect(await count(`SELECT count(*) FROM information_schema.tables WHERE table_name = 'idempotency_keys'`)).toBe(1);
  });

  it('node dist/cli/merchant-create.js prints the new merchant as JSON and stores it', async () => {
    const { stdout } = await node('dist/cli/merchant-create.js', ['--name', 'Compiled merchant', '--json']);
    const created = JSON.parse(stdout) as { id: string; apiKey: string };
    expect(created.apiKey.length).toBeGreaterThanOrEqual(16);
    expect(
      await count(`SELECT count(*) FROM merchants WHERE id = '${created.id}' AND name = 'Compiled merchant'`),
    ).toBe(1);
  });

  it('load only node built-ins and the runtime dependencies of package.json', async () => {
    const { dependencies } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const result = await build({
      entryPoints: compiledEntryPoints.map((file) => path.join(repoRoot, file)),
      bundle: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      metafile: true,
      write: false,
      outdir: path.join(repoRoot, 'dist', '.imports-check'),
      logLevel: 'silent',
    });
    const packages = new Set(
      Object.values(result.metafile.inputs)
        .flatMap((input) => input.imports)
        .filter((entry) => entry.external)
        .map((entry) => entry.path)
        .filter((specifier) => !specifier.startsWith('node:') && !builtinModules.includes(specifier.split('/')[0]!))
        .map((specifier) =>
          specifier
            .split('/')
            .slice(0, specifier.startsWith('@') ? 2 : 1)
            .join('/'),
        ),
    );
    expect(packages.size).toBeGreaterThan(5);
    for (const name of packages) expect(Object.keys(dependencies), name).toContain(name);
    for (const devOnly of ['tsx', 'esbuild', '@apollo/client', 'rxjs'])
      expect(Object.keys(dependencies)).not.toContain(devOnly);
  });

  it('are what the Dockerfile runs: dist/ and the migrations, on production dependencies only', () => {
    const runtime = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8').split(/^FROM .* AS runtime$/m)[1] ?? '';
    expect(runtime).toContain('npm ci --omit=dev');
    expect(runtime).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
    expect(runtime).toMatch(/^COPY db\/migrations \.\/db\/migrations$/m);
    // The workspace the server runs (@payments-gateway/retry): its package.json for npm ci to link
    // it, its compiled dist/ for node to load; the client SDK's workspace stays out of the image.
    const { dependencies } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    expect(Object.keys(dependencies).filter((name) => name.startsWith('@payments-gateway/'))).toEqual([
      '@payments-gateway/retry',
    ]);
    expect(runtime).toMatch(/^COPY packages\/retry\/package\.json \.\/packages\/retry\/$/m);
    expect(runtime).toMatch(/^COPY --from=build \/app\/packages\/retry\/dist \.\/packages\/retry\/dist$/m);
    expect(runtime).toContain('--workspace @payments-gateway/retry --include-workspace-root');
    expect(runtime).not.toContain('packages/client');
    const compose = readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8');
    expect(compose).toContain("command: ['node', 'dist/cli/migrate.js', 'up']");
    expect(compose).not.toMatch(/target: build/);
  });

  it('run with the image’s heap limit and malloc arenas, which the bench and the built children read from the Dockerfile', async () => {
    const shipped = shippedRuntimeEnv();
    expect(shipped).toEqual({ NODE_OPTIONS: '--max-old-space-size=512', MALLOC_ARENA_MAX: '2' });
    const { stdout } = await run(
      'node',
      ['-e', "process.stdout.write(String(require('node:v8').getHeapStatistics().heap_size_limit / 2 ** 20))"],
      { env: { PATH: process.env.PATH ?? '', ...shipped }, encoding: 'utf8' },
    );
    // The old space's 512 MB plus the young generation.
    expect(Number(stdout)).toBeGreaterThanOrEqual(512);
    expect(Number(stdout)).toBeLessThan(640);
    // `NODE_ENV=production npm start` (scripts/start.sh) runs dist/main.js with the same defaults.
    const startScript = readFileSync(path.join(repoRoot, 'scripts', 'start.sh'), 'utf8');
    for (const [name, value] of Object.entries(shipped)) {
      expect(startScript).toContain(`export ${name}="\${${name}-${value}}"`);
    }
  });
});
