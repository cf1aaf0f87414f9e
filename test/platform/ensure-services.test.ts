/**
 * `npm start` needs no manual step: with the configured Postgres and Redis unreachable (and no
 * Docker engine), it starts private instances from the local binaries under a data folder.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureServices } from '../../scripts/ensure-services';

const dataDir = mkdtempSync(path.join(os.tmpdir(), 'pgw-services-'));

afterAll(() => {
  // Stop only the private instances this test started.
  const pgCtl = spawnSync('sh', ['-c', 'ls /usr/lib/postgresql/*/bin/pg_ctl | tail -n 1'], {
    encoding: 'utf8',
  }).stdout.trim();
  const stop = ['-D', path.join(dataDir, 'postgres'), 'stop', '-m', 'fast'];
  if (process.getuid?.() === 0) spawnSync('runuser', ['-u', 'postgres', '--', pgCtl, ...stop]);
  else spawnSync(pgCtl, stop);
  spawnSync('redis-cli', ['-p', '63799', 'shutdown', 'nosave']);
  rmSync(dataDir, { recursive: true, force: true });
});

describe('ensureServices', () => {
  it('returns the configured services unchanged when they answer', async () => {
    const services = await ensureServices({
      databaseUrl: 'postgresql://postgres@127.0.0.1:5432/payments',
      redisUrl: 'redis://127.0.0.1:6379',
      log: () => undefined,
    });
    expect(services).toEqual({
      databaseUrl: 'postgresql://postgres@127.0.0.1:5432/payments',
      redisUrl: 'redis://127.0.0.1:6379',
      started: [],
    });
  });

  it('starts private Postgres and Redis from local binaries when the configured ones do not answer', async () => {
    const lines: string[] = [];
    const services = await ensureServices({
      databaseUrl: 'postgresql://postgres@127.0.0.1:5999/payments',
      redisUrl: 'redis://127.0.0.1:6999',
      dataDir,
      log: (line) => lines.push(line),
    });
    expect(services.started).toEqual(['postgres:54329', 'redis:63799']);
    expect(services.databaseUrl).toBe('postgresql://postgres@127.0.0.1:54329/payments');
    const psql = spawnSync('psql', ['-h', '127.0.0.1', '-p', '54329', '-U', 'postgres', '-tAc', 'select 41 + 1'], {
      encoding: 'utf8',
    });
    expect(psql.stdout.trim()).toBe('42');
    expect(spawnSync('redis-cli', ['-p', '63799', 'ping'], { encoding: 'utf8' }).stdout.trim()).toBe('PONG');
    // A second start reuses them.
    const again = await ensureServices({
      databaseUrl: 'postgresql://postgres@127.0.0.1:5999/payments',
      redisUrl: 'redis://127.0.0.1:6999',
      dataDir,
      log: () => undefined,
    });
    expect(again.databaseUrl).toBe(services.databaseUrl);
  }, 90_000);
});
