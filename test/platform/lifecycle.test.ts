/**
 * The lifecycle list: components stop in reverse start order, each within its deadline, and a
 * failing or hanging step is logged without keeping the rest from stopping.
 */
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Lifecycle } from '../../src/platform/lifecycle';

function recordingLogger() {
  const lines: { msg: string; step?: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

describe('a lifecycle list', () => {
  it('stops components in reverse order of adding them, once', async () => {
    const { logger } = recordingLogger();
    const stopped: string[] = [];
    const lifecycle = new Lifecycle(logger, 1_000);
    for (const name of ['pool', 'queue', 'http']) lifecycle.add({ name, stop: async () => void stopped.push(name) });
    const [first, second] = await Promise.all([lifecycle.stop(), lifecycle.stop()]);
    expect(stopped).toEqual(['http', 'queue', 'pool']);
    expect(first).toBe(second);
    expect(first.failed).toEqual([]);
  });

  it('logs a failing step and a step past its deadline, and still stops the rest', async () => {
    const { logger, lines } = recordingLogger();
    const stopped: string[] = [];
    const lifecycle = new Lifecycle(logger, 60_000);
    lifecycle.add({ name: 'pool', stop: async () => void stopped.push('pool') });
    lifecycle.add({ name: 'hangs', stop: () => new Promise<void>(() => undefined), deadlineMs: 50 });
    lifecycle.add({
      name: 'throws',
      stop: async () => {
        throw new Error('boom');
      },
    });
    const started = Date.now();
    const report = await lifecycle.stop();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(report.failed).toEqual(['throws', 'hangs']);
    expect(stopped).toEqual(['pool']);
    const failures = lines.filter((line) => line.msg === 'a component did not stop cleanly').map((line) => line.step);
    expect(failures).toEqual(['throws', 'hangs']);
  });
});
