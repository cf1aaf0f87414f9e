/**
 * The effectively-once proof at 200 operations (the full 1,000: `npm run prove`): real api,
 * relay and worker processes, lost responses, duplicate and concurrent sends, a relay killed, a
 * worker killed three times, Redis keys deleted, a Postgres outage and a Redis restart that loses
 * its data, on a private Postgres and Redis. Counted from every process's metrics and from
 * Postgres; the verdict includes reconciliation from facts.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatTable, runProof } from '../scripts/prove';

describe('the effectively-once proof', () => {
  it('turns 200 logical operations into 200 charges and 200 ledger effects, balanced, under faults', async () => {
    const lines: string[] = [];
    const result = await runProof({
      operations: 200,
      log: (line) => lines.push(line),
      transcriptPath: path.join('test-artifacts', 'proof-200-transcript.jsonl'),
    });
    process.stdout.write(`${lines.join('\n')}\n${formatTable(result.table)}\n`);
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.table['lost responses (proxy)']).toBeGreaterThan(0);
    expect(result.table['relay re-publishes (killed relay’s unmarked batch)']).toBeGreaterThan(0);
    expect(result.table['reconciliation from facts (grace 0)']).toBe('healthy');
    expect(result.table['worker SIGKILLs (each restarted)']).toBe(3);
    expect(result.table['inbox duplicates skipped']).toBeGreaterThanOrEqual(
      result.table['duplicate deliveries injected'] as number,
    );
  }, 240_000);
});
