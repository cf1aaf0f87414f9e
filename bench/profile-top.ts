/**
 * Self time by function and by package from a V8 `.cpuprofile` (node --cpu-prof), for
 * docs/benchmarks.md "Where the time goes":
 *   npx tsx bench/profile-top.ts <file.cpuprofile> [rows] [fromSeconds] [toSeconds]
 * It prints busy time per second first, so a window (say, the replay scenario's five seconds,
 * without the process's start) can be chosen and passed as fromSeconds..toSeconds.
 * Self time is the time a function was on top of the stack; `(idle)` and `(program)` are the
 * event loop waiting and V8's own work outside JavaScript, `(garbage collector)` is GC.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

const profileSchema = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number() }),
    }),
  ),
  samples: z.array(z.number()),
  timeDeltas: z.array(z.number()),
});

function packageOf(url: string): string {
  const inModules = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (inModules !== null) return inModules[1]!;
  if (url.includes('/src/')) return 'gateway (src)';
  if (url.startsWith('node:')) return 'node core';
  return url === '' ? '(native/v8)' : 'other';
}

function main(): void {
  const [file, rowsText, fromText, toText] = process.argv.slice(2);
  const fromMicros = Number(fromText ?? 0) * 1e6;
  const toMicros = toText === undefined ? Number.POSITIVE_INFINITY : Number(toText) * 1e6;
  if (file === undefined) throw new Error('usage: npx tsx bench/profile-top.ts <file.cpuprofile> [rows]');
  const profile = profileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  let total = 0;
  let idle = 0;
  let at = 0;
  const busyPerSecond: number[] = [];
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    at += delta;
    const frame = byId.get(id)!.callFrame;
    const second = Math.floor(at / 1e6);
    if (frame.functionName !== '(idle)') busyPerSecond[second] = (busyPerSecond[second] ?? 0) + delta;
    if (at < fromMicros || at >= toMicros) return;
    total += delta;
    if (frame.functionName === '(idle)') idle += delta;
    const where =
      frame.url === ''
        ? ''
        : ` ${frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/')}:${frame.lineNumber + 1}`;
    const name = `${frame.functionName || '(anonymous)'}${where}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + delta);
    const pkg = frame.url === '' ? frame.functionName : packageOf(frame.url);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + delta);
  });
  const busy = total - idle;
  process.stdout.write(
    `busy ms per second: ${Array.from(busyPerSecond, (micros, second) => `${second}:${Math.round((micros ?? 0) / 1e3)}`).join(' ')}\n`,
  );
  const rows = Number(rowsText ?? 25);
  const print = (title: string, entries: Map<string, number>) => {
    process.stdout.write(
      `\n${title} (share of busy time, ${(busy / 1e6).toFixed(1)} s busy of ${(total / 1e6).toFixed(1)} s)\n`,
    );
    for (const [name, micros] of [...entries]
      .filter(([n]) => n !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, rows)) {
      process.stdout.write(
        `${((100 * micros) / busy).toFixed(1).padStart(5)}%  ${(micros / 1e3).toFixed(0).padStart(6)} ms  ${name}\n`,
      );
    }
  };
  print('self time by package', byPackage);
  print('self time by function', byFunction);
}

main();
