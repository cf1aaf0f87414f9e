/**
 * A gateway in a child process, for tests and scripts that kill it for real (SIGKILL) or stop it
 * (SIGTERM). Lives under scripts/ because scripts never import from test/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { shippedRuntimeEnv } from './built';
import { freePort } from './redis';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ChildGateway {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  readonly output: () => string;
  /** Resolves with the exit code or signal once the process has gone. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface ChildGatewayOptions {
  /** A fixed port, so a restarted api is found where its proxy forwards; a free one otherwise. */
  readonly port?: number;
  /**
   * How long to wait for /healthz. Generous by default: on a loaded machine (two cores shared by
   * several suites) a cold start of tsx and the gateway's modules has taken over 30 s, and a
   * deadline costs nothing when the start is quick.
   */
  readonly readyTimeoutMs?: number;
  /**
   * Run the compiled gateway (`node dist/main.js`, after `npm run build`) instead of the source,
   * with the environment the runtime image sets for node (shippedRuntimeEnv).
   */
  readonly built?: boolean;
  /** Flags for node itself, before the entry (e.g. `--cpu-prof`, which NODE_OPTIONS refuses). */
  readonly nodeArguments?: readonly string[];
}

export async function startChildGateway(
  env: Record<string, string>,
  options: ChildGatewayOptions = {},
): Promise<ChildGateway> {
  const port = options.port ?? (await freePort());
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  const exitWithParent = path.join(repoRoot, 'scripts', 'harness', 'exit-with-parent.ts');
  // The built gateway runs under plain node, as in production: no tsx loader that could hide a
  // broken build (it would resolve what node cannot), so no exit-with-parent guard either.
  const entry = options.built
    ? [path.join(repoRoot, 'dist', 'main.js')]
    : ['--import', 'tsx', '--import', exitWithParent, path.join(repoRoot, 'src', 'main.ts')];
  const child = spawn(process.execPath, [...(options.nodeArguments ?? []), ...entry], {
    cwd: repoRoot,
    // The built gateway gets what the image sets for node (heap limit, malloc arenas), as it ships.
    env: { ...process.env, ...(options.built ? shippedRuntimeEnv() : {}), ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  // The last 64 KiB is plenty for a report; a long run under faults logs far more.
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-65_536));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`gateway child exited before it was ready:\n${output}`);
    }
    try {
      const response = await fetch(`${url}/healthz`);
      // Another process may have taken the port between freePort() and our listen (machines run
      // many suites at once): its /healthz is not ours, and our child is about to exit EADDRINUSE.
      if (response.ok && listensOn(child.pid, port)) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`gateway child did not become ready in ${readyTimeoutMs / 1_000} s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    port,
    process: child,
    output: () => output,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/**
 * Whether the process holds the listening socket on the port (Linux: its socket inodes in
 * /proc/<pid>/fd against the LISTEN rows of /proc/net/tcp*). True where /proc cannot say.
 */
export function listensOn(pid: number | undefined, port: number): boolean {
  if (pid === undefined) return false;
  let inodes: Set<string>;
  try {
    inodes = new Set(
      readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
        try {
          const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          return match === null ? [] : [match[1]!];
        } catch {
          return []; // Closed meanwhile.
        }
      }),
    );
  } catch {
    return true; // No /proc (not Linux): the health check alone decides, as before.
  }
  const localPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const listenState = '0A';
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1]?.endsWith(localPort) && fields[3] === listenState && inodes.has(fields[9] ?? '')) return true;
    }
  }
  return false;
}
