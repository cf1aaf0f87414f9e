/**
 * The alert rules fire when they should: `promtool test rules` runs ops/prometheus/alerts.test.yml,
 * which shows each alert firing on the series that should page (and staying quiet otherwise).
 * Every alert carries a runbook_url whose anchor is a heading in runbook.md.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchor(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replace(/ /g, '-');
}

describe('alert rules', () => {
  it('pass their promtool unit tests: each alert fires on the series that should page', () => {
    const result = spawnSync('promtool', ['test', 'rules', 'ops/prometheus/alerts.test.yml'], { encoding: 'utf8' });
    expect(result.error, 'promtool is installed (.ci/run installs Debian’s prometheus package)').toBeUndefined();
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });

  it('every alert is unit-tested and links to a runbook entry that exists', () => {
    const rules = readFileSync('ops/prometheus/alerts.yml', 'utf8');
    const tests = readFileSync('ops/prometheus/alerts.test.yml', 'utf8');
    const runbook = readFileSync('runbook.md', 'utf8');
    const anchors = new Set([...runbook.matchAll(/^#+ (.+)$/gm)].map((match) => anchor(match[1]!)));
    const alerts = [...rules.matchAll(/- alert: (\w+)/g)].map((match) => match[1]!);
    const links = [...rules.matchAll(/runbook_url: '([^']+)'/g)].map((match) => match[1]!);
    expect(links.length).toBe(alerts.length);
    for (const link of links) expect(anchors, link).toContain(link.replace(/^runbook\.md#/, ''));
    const newAlerts = ['LedgerJobsFailed', 'ReconciliationIssue', 'GatewayRoleDown', 'RelaySilent', 'WorkerSilent'];
    for (const name of [...newAlerts, 'ApiSilent', 'ReconciliationSilent']) {
      expect(tests, name).toContain(`alertname: ${name}`);
    }
  });
});
