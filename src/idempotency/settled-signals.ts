/**
 * Wake-ups for requests waiting on an in-flight twin (docs/contract.md §2): when a key completes
 * or is released, every process is told, so a waiter answers at once instead of polling.
 *
 * Redis pub/sub carries them (one subscribed connection per process, shared by all waiters);
 * when Redis cannot publish or subscribe, Postgres LISTEN/NOTIFY does (one listening connection
 * per process, opened on first need). A signal only wakes a waiter, which then reads the key's
 * state again: a lost signal costs a wait up to the waiter's deadline, never a wrong answer.
 */
import pg from 'pg';
import type { Queryable } from '../platform/database';
import type { RedisClient } from '../platform/redis';

export interface Subscription {
  /** Resolves true when the key settled (completed or released), false when `timeoutMs` passed. */
  wait(timeoutMs: number): Promise<boolean>;
  close(): void;
}

export interface SettledSignals {
  /** Tells waiters on every process that the key settled. Never throws. */
  publish(merchantId: string, key: string): Promise<void>;
  /** Undefined when no transport can subscribe now. */
  subscribe(merchantId: string, key: string): Promise<Subscription | undefined>;
  close(): Promise<void>;
}

const postgresChannel = 'idempotency_settled';

/** Waiters per topic, and the wake-up of each. */
class Waiters {
  private readonly byTopic = new Map<string, Set<() => void>>();

  /** Adds a waiter; `first` says whether the topic had none (so the transport must subscribe). */
  add(topic: string): { first: boolean; woken: Promise<true>; remove: () => boolean } {
    let waiters = this.byTopic.get(topic);
    const first = waiters === undefined;
    if (waiters === undefined) {
      waiters = new Set();
      this.byTopic.set(topic, waiters);
    }
    let wake: () => void = () => undefined;
    const woken = new Promise<true>((resolve) => {
      wake = () => resolve(true);
    });
    waiters.add(wake);
    const set = waiters;
    // Returns true when it removed the topic's last waiter (so the transport may unsubscribe).
    const remove = () => {
      set.delete(wake);
      if (set.size > 0 || this.byTopic.get(topic) !== set) return false;
      this.byTopic.delete(topic);
      return true;
    };
    return { first, woken, remove };
  }

  wake(topic: string): void {
    for (const wake of this.byTopic.get(topic) ?? []) wake();
  }
}

function subscription(woken: Promise<true>, close: () => void): Subscription {
  return {
    wait: async (timeoutMs) => {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs));
      });
      try {
        return await Promise.race([woken, timedOut]);
      } finally {
        clearTimeout(timer);
      }
    },
    close,
  };
}

export interface SettledSignalOptions {
  readonly redis: RedisClient;
  /** The deployment's Redis namespace (REDIS_KEY_PREFIX). */
  readonly redisKeyPrefix: string;
  readonly db: Queryable;
  /** For the Postgres listener's own connection. */
  readonly databaseUrl: string;
}

export class RedisWithPostgresSignals implements SettledSignals {
  private readonly waiters = new Waiters();
  private readonly subscriber: RedisClient;
  private readonly subscribed = new Map<string, Promise<unknown>>();
  private listener: Promise<pg.Client> | undefined;

  constructor(private readonly options: SettledSignalOptions) {
    // Connected up front: the hot-path client queues nothing while offline, so a connection
    // opened at the first wait would refuse that wait's SUBSCRIBE.
    this.subscriber = options.redis.duplicate();
    this.subscriber.on('error', () => undefined);
    this.subscriber.on('message', (channel: string) => this.waiters.wake(channel.slice(this.channelPrefix.length)));
  }

  private get channelPrefix(): string {
    return `${this.options.redisKeyPrefix}:idem-settled:`;
  }

  async publish(merchantId: string, key: string): Promise<void> {
    const topic = `{${merchantId}}:${key}`;
    try {
      await this.options.redis.publish(this.channelPrefix + topic, '1');
    } catch {
      try {
        await this.options.db.$executeRaw`SELECT pg_notify(${postgresChannel}, ${topic})`;
      } catch {
        // Waiters fall back to their deadline and read Postgres then.
      }
    }
  }

  async subscribe(merchantId: string, key: string): Promise<Subscription | undefined> {
    const topic = `{${merchantId}}:${key}`;
    const { first, woken, remove } = this.waiters.add(topic);
    const close = () => {
      if (remove() && this.subscribed.delete(topic)) {
        this.subscriber.unsubscribe(this.channelPrefix + topic).catch(() => undefined);
      }
    };
    if (first || !this.subscribed.has(topic))
      this.subscribed.set(topic, this.subscriber.subscribe(this.channelPrefix + topic));
    try {
      await this.subscribed.get(topic);
      return subscription(woken, close);
    } catch {
      this.subscribed.delete(topic);
    }
    // Redis cannot subscribe: listen on Postgres (every topic on one channel).
    try {
      await this.listen();
      return subscription(woken, close);
    } catch {
      close();
      return undefined;
    }
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
    const listener = this.listener;
    this.listener = undefined;
    await listener?.then((client) => client.end()).catch(() => undefined);
  }

  private listen(): Promise<pg.Client> {
    this.listener ??= (async () => {
      const client = new pg.Client({
        connectionString: this.options.databaseUrl,
        application_name: 'idempotency-listener',
        // A waiter gives up on the listener quickly and waits out its deadline instead.
        connectionTimeoutMillis: 2_000,
      });
      const forget = () => {
        this.listener = undefined;
        client.end().catch(() => undefined);
      };
      client.on('error', forget);
      client.on('notification', (message) => {
        if (message.payload !== undefined) this.waiters.wake(message.payload);
      });
      await client.connect();
      await client.query(`LISTEN ${postgresChannel}`);
      return client;
    })().catch((error: unknown) => {
      this.listener = undefined;
      throw error;
    });
    return this.listener;
  }
}
