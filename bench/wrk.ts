/**
 * wrk, the C load generator `npm run bench` drives: it costs the servers far less CPU than a
 * Node load generator on the same cores would. ensureWrk() installs Debian's package when it is
 * missing and we are root, and otherwise says the command. runWrk() runs bench/wrk-post.lua
 * against one URL and reads its WRK_RESULT line; it can sample a process's RSS meanwhile.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'wrk-post.lua');

export function ensureWrk(): void {
  if (spawnSync('sh', ['-c', 'command -v wrk']).status === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error('wrk is not installed: run `sudo apt-get install -y wrk`, then `npm run bench` again');
  }
  process.stdout.write('wrk is not installed: apt-get install -y wrk\n');
  const install = spawnSync('apt-get', ['install', '-y', 'wrk'], { stdio: 'inherit' });
  if (install.status !== 0) throw new Error('apt-get install -y wrk failed; install wrk and run the bench again');
}

export interface WrkLoad {
  readonly url: string;
  readonly connections: number;
  readonly seconds: number;
  readonly body: string;
  readonly authorization?: string;
  readonly keys: { readonly kind: 'none' } | { readonly kind: 'fresh'; readonly prefix: string } | CycledKeys;
  /** A process whose resident set size is sampled, and whose CPU time is read, while the load runs. */
  readonly rssPid?: number;
}

interface CycledKeys {
  readonly kind: 'cycle';
  readonly prefix: string;
  readonly count: number;
}

export interface WrkResult {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  readonly socketErrors: number;
  /** The largest RSS seen while the load ran, in MB (when rssPid was given). */
  readonly rssMbMax: number | undefined;
  /** That process's CPU time (user + system, all its threads) per request answered, in ms. */
  readonly cpuMsPerRequest: number | undefined;
}

const resultLine = z.object({
  requests: z.number(),
  durationUs: z.number().positive(),
  non2xx: z.number(),
  socketErrors: z.number(),
  p50Us: z.number(),
  p99Us: z.number(),
});

/** User + system CPU time of a process so far, in ms (/proc/<pid>/stat, clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces, so split after its closing parenthesis).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kilobytes = Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? Number.NaN);
  return kilobytes / 1_024;
}

export async function runWrk(load: WrkLoad): Promise<WrkResult> {
  const env: Record<string, string> = {
    ...process.env,
    WRK_BODY: load.body,
    WRK_AUTHORIZATION: load.authorization ?? '',
    WRK_KEYS: load.keys.kind,
    WRK_KEY_PREFIX: load.keys.kind === 'none' ? '' : load.keys.prefix,
    WRK_KEY_COUNT: load.keys.kind === 'cycle' ? String(load.keys.count) : '1',
  };
  // Two threads at most: the machine has two cores, and the servers need them more.
  const threads = Math.min(2, load.connections);
  const args = ['-t', String(threads), '-c', String(load.connections), '-d', `${load.seconds}s`];
  const child = spawn('wrk', [...args, '--timeout', '10s', '-s', script, load.url], { env });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let rssMbMax: number | undefined;
  const cpuMsBefore = load.rssPid === undefined ? undefined : cpuMs(load.rssPid);
  const sampler =
    load.rssPid === undefined
      ? undefined
      : setInterval(() => (rssMbMax = Math.max(rssMbMax ?? 0, rssMb(load.rssPid!))), 250);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (sampler !== undefined) clearInterval(sampler);
  const cpuMsUsed =
    load.rssPid === undefined || cpuMsBefore === undefined ? undefined : cpuMs(load.rssPid) - cpuMsBefore;
  const line = output.split('\n').find((candidate) => candidate.startsWith('WRK_RESULT '));
  if (code !== 0 || line === undefined) throw new Error(`wrk failed (exit ${String(code)}):\n${output}`);
  const result = resultLine.parse(JSON.parse(line.slice('WRK_RESULT '.length)));
  return {
    perSecond: Math.round(result.requests / (result.durationUs / 1e6)),
    p50Ms: result.p50Us / 1_000,
    p99Ms: result.p99Us / 1_000,
    non2xx: result.non2xx,
    socketErrors: result.socketErrors,
    rssMbMax,
    cpuMsPerRequest: cpuMsUsed === undefined || result.requests === 0 ? undefined : cpuMsUsed / result.requests,
  };
}
