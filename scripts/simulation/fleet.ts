/**
 * The gateway processes of one schedule: two api (each behind a lossy proxy, which is pointed at
 * a restarted api's new port), two relay and two worker, each a real child process started by
 * ROLE. A process the faults did not kill that exits anyway is a finding: it is written on the
 * timeline, counted, and started again.
 */
import { GatewayClient } from '@payments-gateway/client';
import { startChildGateway, type ChildGateway } from '../harness/child-gateway';
import { startLossyProxy, type LossyProxy } from '../harness/lossy-proxy';
import { processNames, type ProcessName } from './plan';
import type { Timeline } from './timeline';

export interface UnexpectedExit {
  readonly name: ProcessName;
  readonly atMs: number;
  readonly exit: string;
  readonly outputTail: string;
}

const roleOf = (name: ProcessName) => name.split('-')[0]!;

export class Fleet {
  readonly proxies: LossyProxy[] = [];
  readonly unexpectedExits: UnexpectedExit[] = [];
  private readonly children = new Map<ProcessName, ChildGateway>();
  private readonly ports = new Map<ProcessName, number>();
  /** Processes being killed on purpose (or stopped at the end): their exit is no finding. */
  private readonly expectedExits = new Set<ProcessName>();
  private readonly starting = new Map<ProcessName, Promise<void>>();
  private stopping = false;

  constructor(
    private readonly env: Record<string, string>,
    private readonly timeline: Timeline,
  ) {}

  async start(): Promise<void> {
    await Promise.all(processNames.map((name) => this.startProcess(name)));
    for (const name of ['api-1', 'api-2'] as const) this.proxies.push(await startLossyProxy(this.ports.get(name)!));
  }

  /**
   * One real charge through each api before the clock starts, until one answers within 3 s: a
   * cold process (and a loaded machine) would otherwise time out the schedule's first requests.
   */
  async warmUp(apiKey: string, deadlineMs = 180_000): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    for (const api of [0, 1] as const) {
      const client = new GatewayClient({
        url: `${this.apiUrl(api)}/graphql`,
        apiKey,
        retry: { attemptsMax: 1, timeoutMs: 3_000 },
      });
      for (let attempt = 0; ; attempt += 1) {
        const answered = await client
          .createCharge(
            { amount: 100, currency: 'EUR', source: 'tok_visa', description: 'warm-up' },
            { idempotencyKey: `warm-up-${api}-${attempt}` },
          )
          .then(
            () => true,
            () => false,
          );
        if (answered) break;
        if (Date.now() > deadline)
          throw new Error(`api-${api + 1} did not answer a charge within 3 s before the deadline`);
      }
    }
  }

  apiUrl(api: 0 | 1): string {
    return `${this.proxies[api]!.url}`;
  }

  /** A direct URL of a running api (for the admin API after the faults). */
  directApiUrl(): string {
    return `http://127.0.0.1:${this.ports.get('api-1')!}`;
  }

  isUp(name: ProcessName): boolean {
    return this.children.has(name);
  }

  /** Starts a process, trying again while it cannot start (say, during an outage), until the deadline. */
  /** One start at a time per process: a second caller waits for the start already under way. */
  startProcess(name: ProcessName, deadlineMs = 600_000): Promise<void> {
    const underWay = this.starting.get(name);
    if (underWay !== undefined) return underWay;
    const start = this.startOnce(name, deadlineMs).finally(() => this.starting.delete(name));
    this.starting.set(name, start);
    return start;
  }

  private async startOnce(name: ProcessName, deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      try {
        // A fresh free port on every start, never the last one: while a killed api was down,
        // another process on this shared machine may have taken its port.
        const child = await startChildGateway(
          { ...this.env, ROLE: roleOf(name) },
          { readyTimeoutMs: 300_000, built: true },
        );
        this.ports.set(name, child.port);
        this.proxyOf(name)?.setTargets([child.port]);
        this.children.set(name, child);
        this.expectedExits.delete(name);
        void child.exited.then((exit) => this.onExit(name, child, exit));
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        this.timeline.add(`${name} could not start yet (${String(error).split('\n')[0]}); trying again`);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  }

  async kill(name: ProcessName, signal: NodeJS.Signals): Promise<string> {
    await this.starting.get(name)?.catch(() => undefined); // Kill what is there, not a start in progress.
    const child = this.children.get(name);
    if (child === undefined) return 'not running';
    this.expectedExits.add(name);
    // Until it is back on a new port, its proxy refuses: its old port may be another process's soon.
    this.proxyOf(name)?.setTargets([]);
    const exit = await child.kill(signal);
    this.children.delete(name);
    return exit.signal ?? `code ${exit.code}`;
  }

  /** Starts every process that is not running (after the faults). */
  async ensureAllUp(): Promise<void> {
    await Promise.all(processNames.filter((name) => !this.children.has(name)).map((name) => this.startProcess(name)));
  }

  outputTail(name: ProcessName, characters = 3_000): string {
    return this.children.get(name)?.output().slice(-characters) ?? '';
  }

  /** Each running process's last error-level log lines (pino levels 50 and 60), for a report. */
  errorLines(perProcess = 8): string {
    const lines: string[] = [];
    for (const [name, child] of this.children) {
      const errors = child
        .output()
        .split('\n')
        .filter((line) => /"level":(50|60)/.test(line))
        .slice(-perProcess);
      if (errors.length > 0)
        lines.push(`${name} errors (last ${errors.length}):`, ...errors.map((line) => `  ${line.slice(0, 600)}`));
    }
    return lines.join('\n');
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    for (const proxy of this.proxies) await proxy.close();
    await Promise.all(
      [...this.children.entries()].map(([name, child]) => {
        this.expectedExits.add(name);
        return child.kill('SIGKILL');
      }),
    );
    this.children.clear();
  }

  /** An api's proxy (undefined for the other roles, and before the proxies exist). */
  private proxyOf(name: ProcessName): LossyProxy | undefined {
    return name === 'api-1' ? this.proxies[0] : name === 'api-2' ? this.proxies[1] : undefined;
  }

  private onExit(name: ProcessName, child: ChildGateway, exit: { code: number | null; signal: NodeJS.Signals | null }) {
    if (this.stopping || this.expectedExits.has(name) || this.children.get(name) !== child) return;
    this.children.delete(name);
    this.proxyOf(name)?.setTargets([]);
    const record = {
      name,
      atMs: this.timeline.now(),
      exit: exit.signal ?? `code ${exit.code}`,
      outputTail: child.output().slice(-3_000),
    };
    this.unexpectedExits.push(record);
    this.timeline.add(`${name} EXITED BY ITSELF (${record.exit}); starting it again`);
    void this.startProcess(name).catch((error: unknown) =>
      this.timeline.add(`${name} could not restart: ${String(error)}`),
    );
  }
}
