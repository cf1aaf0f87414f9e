/**
 * The repository stands on its own: a clone has the contract (docs/contract.md), so nothing in it
 * may point to a file outside it. The forbidden strings are built at run time so this file does
 * not match itself.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const outside = [['..', 'shared'].join('/'), ['', 'work', 'shared'].join('/'), ['DESIGN', 'md'].join('.')];

function trackedFiles(): string[] {
  const listed = execFileSync('git', ['ls-files', '-z'], { cwd: repoRoot, encoding: 'utf8' });
  return listed.split('\0').filter((file) => file !== '' && existsSync(path.join(repoRoot, file)));
}

describe('the repository', () => {
  it('refers to nothing outside itself: every tracked file is free of the old contract paths', () => {
    const offenders: string[] = [];
    for (const file of trackedFiles()) {
      const text = readFileSync(path.join(repoRoot, file), 'utf8');
      for (const needle of outside) if (text.includes(needle)) offenders.push(`${file}: ${needle}`);
    }
    expect(offenders).toEqual([]);
  });

  it('carries the contract every "docs/contract.md §N" reference points to', () => {
    const contract = readFileSync(path.join(repoRoot, 'docs', 'contract.md'), 'utf8');
    const sections = new Set([...contract.matchAll(/^## (\d+)\. /gm)].map((match) => Number(match[1])));
    expect([...sections]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    for (const file of trackedFiles()) {
      const text = readFileSync(path.join(repoRoot, file), 'utf8');
      for (const match of text.matchAll(/docs\/contract\.md`? §(\d+)/g)) {
        expect(sections.has(Number(match[1])), `${file} refers to §${match[1]}`).toBe(true);
      }
    }
  });

  it('runs in CI exactly the test command the README gives', () => {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const command = readme.match(/^(npm ci && npm run verify)\s+#/m)?.[1];
    expect(command).toBe('npm ci && npm run verify');
    const ci = readFileSync(path.join(repoRoot, '.ci', 'run'), 'utf8')
      .trim()
      .split('\n');
    expect(ci.at(-1)).toBe(command);
  });
});
