/**
 * What ships to an operator, read from the files themselves (no Docker engine runs here: the
 * compose file's own validation is in prometheus.test.ts): the image runs the compiled gateway
 * under an init as a non-root user, and the compose stack is closed and complete.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const dockerfile = readFileSync('Dockerfile', 'utf8');
const compose = readFileSync('docker-compose.yml', 'utf8');

describe('the Dockerfile', () => {
  it('builds in one stage and runs node dist/main.js under tini, non-root, with production dependencies only', () => {
    const stages = [...dockerfile.matchAll(/^FROM (\S+)(?: AS (\w+))?$/gm)];
    expect(stages.map((stage) => stage[2])).toEqual(['build', 'runtime']);
    for (const stage of stages) expect(stage[1]).toMatch(/^node:22\.\d+\.\d+-[a-z]+-slim$/);
    const runtime = dockerfile.slice(dockerfile.indexOf('AS runtime'));
    expect(runtime).toContain('npm ci --omit=dev');
    expect(runtime).toMatch(/^USER node$/m);
    expect(runtime).toMatch(/^HEALTHCHECK /m);
    expect(runtime).toContain('ENTRYPOINT ["/usr/bin/tini", "--"]');
    expect(runtime).toContain('CMD ["node", "dist/main.js"]');
    expect(dockerfile).not.toContain('tsx src/main.ts');
  });

  it('leaves tests, benches and artefacts out of the build context', () => {
    const ignored = readFileSync('.dockerignore', 'utf8').split('\n');
    for (const folder of ['test', 'bench', 'test-artifacts', 'dist', 'node_modules', '.data']) {
      expect(ignored).toContain(folder);
    }
  });
});

describe('docker-compose.yml', () => {
  it('publishes every port on 127.0.0.1 only', () => {
    const published = [...compose.matchAll(/^\s+ports: \[(.*)\]$/gm)].flatMap((line) => line[1]!.split(','));
    expect(published.length).toBeGreaterThan(0);
    for (const port of published) expect(port.trim()).toMatch(/^'127\.0\.0\.1:\d+:\d+'$/);
  });

  it('gives Postgres and Redis credentials, and Redis an append-only file', () => {
    expect(compose).not.toMatch(/POSTGRES_HOST_AUTH_METHOD:\s*trust/);
    expect(compose).toMatch(/POSTGRES_PASSWORD: /);
    expect(compose).toContain("'--requirepass'");
    expect(compose).toMatch(/'--appendonly',\s*'yes'/);
  });

  it('has a healthcheck on every service that keeps running, and a provisioned Grafana', () => {
    const result = spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '--services'], {
      encoding: 'utf8',
    });
    const services = result.status === 0 ? result.stdout.trim().split('\n') : [];
    expect(services).toEqual(expect.arrayContaining(['postgres', 'redis', 'api', 'relay', 'worker', 'grafana']));
    const resolved = spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config'], { encoding: 'utf8' }).stdout;
    for (const service of services.filter((name) => name !== 'migrate')) {
      const block = resolved.split(new RegExp(`^  ${service}:$`, 'm'))[1]?.split(/^ {2}\S/m)[0] ?? '';
      expect(block, service).toContain('healthcheck:');
    }
    expect(compose).toContain('./ops/grafana/provisioning:/etc/grafana/provisioning');
    expect(readFileSync('ops/grafana/provisioning/datasources/prometheus.yml', 'utf8')).toContain('type: prometheus');
  });
});
