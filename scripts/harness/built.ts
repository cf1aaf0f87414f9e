/**
 * The compiled gateway (dist/), built once for the tests and scripts that run what ships (the
 * simulator too): npm run build:server, unless dist/main.js is already newer than every source
 * file of the server and of the retry package it runs (npm run verify has just built it).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function newestSourceMs(folder: string): number {
  let newest = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const full = path.join(folder, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSourceMs(full) : statSync(full).mtimeMs);
  }
  return newest;
}

export function ensureBuilt(): void {
  const builtMs = (() => {
    try {
      return statSync(path.join(repoRoot, 'dist', 'main.js')).mtimeMs;
    } catch {
      return 0;
    }
  })();
  // The server runs the retry package's compiled dist/ too (build:server builds it first).
  const newestMs = Math.max(
    newestSourceMs(path.join(repoRoot, 'src')),
    newestSourceMs(path.join(repoRoot, 'packages', 'retry', 'src')),
  );
  if (builtMs > newestMs) return;
  const result = spawnSync('npm', ['run', '-s', 'build:server'], { cwd: repoRoot, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`npm run build failed:\n${result.stdout}${result.stderr}`);
}

/**
 * The environment the runtime image sets for node itself (the Dockerfile's runtime stage: its
 * `ENV` lines, without NODE_ENV and PORT, which each caller sets): the heap limit and the malloc
 * arenas that keep the api's resident set under its bound (docs/benchmarks.md, "api RSS"). The
 * bench and the tests that run dist/ run with it, so they measure what ships.
 */
export function shippedRuntimeEnv(): Record<string, string> {
  const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8').replace(/\\\n\s*/g, ' ');
  const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const env: Record<string, string> = {};
  for (const line of runtimeStage.split('\n')) {
    const match = /^ENV\s+(.*)$/.exec(line.trim());
    if (match === null) continue;
    for (const [, name, quoted, bare] of match[1]!.matchAll(/([A-Z_][A-Z0-9_]*)=(?:"([^"]*)"|(\S*))/g)) {
      if (name !== 'NODE_ENV' && name !== 'PORT') env[name!] = quoted ?? bare ?? '';
    }
  }
  return env;
}
