/**
 * Injects a plan's faults for real, each at its planned time, and heals each one (restart, start,
 * release, SIGCONT) after its planned duration. Every action and its outcome goes on the timeline.
 * Only the schedule's own private Postgres cluster, private redis-server and child processes are
 * touched.
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import type { PrivatePostgres } from '../harness/private-postgres';
import type { PrivateRedis } from '../harness/redis';
import type { Fleet } from './fleet';
import { describeFault, type Fault, type FaultKind } from './plan';
import type { Timeline } from './timeline';

export interface FaultTargets {
  readonly postgres: PrivatePostgres;
  /** The schedule's database, for locks and terminated backends. */
  readonly databaseUrl: string;
  readonly databaseName: string;
  readonly redis: PrivateRedis;
  readonly fleet: Fleet;
  readonly timeline: Timeline;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class FaultInjector {
  readonly injected = new Map<FaultKind, number>();

  constructor(private readonly targets: FaultTargets) {}

  /** Runs every fault at its time; resolves when all are healed. */
  async run(faults: readonly Fault[]): Promise<void> {
    await Promise.all(
      faults.map(async (fault) => {
        await sleep(Math.max(0, fault.atMs - this.targets.timeline.now()));
        this.targets.timeline.add(`FAULT ${describeFault(fault)}`);
        try {
          await this.inject(fault);
          this.injected.set(fault.kind, (this.injected.get(fault.kind) ?? 0) + 1);
        } catch (error) {
          this.targets.timeline.add(`  ${fault.kind} could not be completed: ${String(error).split('\n')[0]}`);
        }
      }),
    );
  }

  private async inject(fault: Fault): Promise<void> {
    const { fleet, postgres, redis, timeline } = this.targets;
    switch (fault.kind) {
      case 'kill': {
        const exit = await fleet.kill(fault.target, fault.signal);
        timeline.add(`  ${fault.target} gone (${exit})`);
        await sleep(fault.downMs);
        await fleet.startProcess(fault.target);
        timeline.add(`  ${fault.target} back`);
        return;
      }
      case 'kill-repeatedly':
        for (let time = 1; time <= fault.times; time += 1) {
          const exit = await fleet.kill(fault.target, 'SIGKILL');
          timeline.add(`  ${fault.target} killed (${time} of ${fault.times}: ${exit})`);
          await fleet.startProcess(fault.target);
          await sleep(fault.upMs);
        }
        return;
      case 'postgres-stop':
        await postgres.stop(fault.mode);
        timeline.add(`  Postgres stopped (-m ${fault.mode})`);
        await sleep(fault.downMs);
        await postgres.start();
        timeline.add('  Postgres started');
        return;
      case 'terminate-backends':
        return this.terminateBackends();
      case 'lock':
        return this.holdLock(fault.table, fault.holdMs);
      case 'redis-restart':
        await redis.stop();
        timeline.add('  redis-server killed (its data is gone)');
        await sleep(fault.downMs);
        await redis.start();
        timeline.add('  redis-server started, empty');
        return;
      case 'redis-flushall':
        return this.flushAll();
      case 'redis-freeze':
        redis.signal('SIGSTOP');
        await sleep(fault.downMs);
        redis.signal('SIGCONT');
        timeline.add('  redis-server thawed (SIGCONT)');
        return;
      case 'lose-responses':
        fleet.proxies[fault.api]!.dropResponses(fault.count);
        return;
    }
  }

  private async terminateBackends(): Promise<void> {
    const client = new pg.Client({ connectionString: this.targets.postgres.url });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const { rows } = await client.query<{ terminated: string }>(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::text AS terminated
           FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [this.targets.databaseName],
      );
      this.targets.timeline.add(`  terminated ${rows[0]?.terminated ?? 0} backends`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async holdLock(table: string, holdMs: number): Promise<void> {
    const client = new pg.Client({ connectionString: this.targets.databaseUrl });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('BEGIN');
      await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      this.targets.timeline.add(`  holding the lock on ${table}`);
      await sleep(holdMs);
      await client.query('ROLLBACK');
      this.targets.timeline.add(`  released the lock on ${table}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async flushAll(): Promise<void> {
    const client = new Redis(this.targets.redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      // The schedule's own private redis-server: nobody else's data is in it.
      await client.flushall();
    } finally {
      client.disconnect();
    }
  }
}
