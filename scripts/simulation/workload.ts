/**
 * Runs a plan's operations against the two api proxies through the client SDK's retry loop
 * (@payments-gateway/client), recording every attempt of every send: when, through which api, the status, the
 * error code, Retry-After, Idempotent-Replayed and the id answered. One record per logical
 * operation is what the checks and a failure report read.
 */
import { MemoryTokenBucketStore, RetryBudget, sendWithRetries } from '@payments-gateway/client';
import type { Operation } from './plan';
import type { Timeline } from './timeline';

export interface AttemptLog {
  readonly atMs: number;
  readonly via: string;
  readonly attempt: number;
  readonly status: number | 'network-error' | 'abandoned';
  readonly code: string;
  readonly retryAfter: string | null;
  readonly replayed: string | null;
  /** The id of the charge or refund answered, if any. */
  readonly id: string | null;
  readonly data: Record<string, unknown> | null;
}

export interface SendRecord {
  readonly label: string;
  readonly inputJson: string;
  readonly attempts: AttemptLog[];
}

export interface OperationRecord {
  readonly operation: Operation;
  readonly sends: SendRecord[];
  /** For refunds: the charge refunded. */
  chargeId: string | null;
  skipped: string | null;
  done: boolean;
}

/** Statuses the client never retries: the answer is final. */
const finalStatuses = new Set([200, 400, 401, 403, 404, 422]);

export function finalAttempt(send: SendRecord): AttemptLog | null {
  const last = send.attempts.at(-1);
  return last !== undefined && typeof last.status === 'number' && finalStatuses.has(last.status) ? last : null;
}

const chargeSelection = 'id amount currency status failureCode description metadata createdAt';
const refundSelection = 'id chargeId amount currency status createdAt';
const queries = {
  createCharge: `mutation CreateCharge($input: CreateChargeInput!) { createCharge(input: $input) { ${chargeSelection} } }`,
  refundCharge: `mutation RefundCharge($input: RefundChargeInput!) { refundCharge(input: $input) { ${refundSelection} } }`,
};
export type Mutation = keyof typeof queries;

export interface WorkloadOptions {
  readonly apiKey: string;
  readonly apiUrls: readonly [string, string];
  readonly timeline: Timeline;
}

export class Workload {
  readonly records: OperationRecord[] = [];
  // Generous: an operation should outlive any one fault; the budget must never be what stops it.
  private readonly budget = new RetryBudget(
    new MemoryTokenBucketStore({ capacity: 1_000_000, refillPerSecond: 1_000 }),
    {
      depositPerSuccess: 0,
    },
  );
  private readonly finished = new Map<number, Promise<void>>();

  constructor(private readonly options: WorkloadOptions) {}

  /** Starts every operation at its planned time; resolves when all have settled. */
  async run(operations: readonly Operation[]): Promise<void> {
    const runs = operations.map((operation) => {
      const record: OperationRecord = { operation, sends: [], chargeId: null, skipped: null, done: false };
      this.records.push(record);
      const run = (async () => {
        await sleep(Math.max(0, operation.startMs - this.options.timeline.now()));
        await this.runOperation(record).catch((error: unknown) => {
          record.skipped = `client error: ${String(error)}`;
        });
        record.done = true;
      })();
      this.finished.set(operation.index, run);
      return run;
    });
    await Promise.all(runs);
  }

  /**
   * After the faults: one more try, with the same key, for every operation that has no final
   * answer, except the clients that never come back.
   */
  async comeBack(): Promise<void> {
    await Promise.all(
      this.records.map(async (record) => {
        const { operation } = record;
        if (!operation.comesBack || record.skipped !== null || record.sends.length === 0) return;
        if (operation.kind === 'charge' && operation.source === 'tok_timeout') return; // It can never succeed.
        if (record.sends.some((send) => finalAttempt(send) !== null && send.label !== 'reuse')) return;
        const first = record.sends[0]!;
        await this.send(record, 'late', mutationOf(operation), first.inputJson, 0);
      }),
    );
  }

  private async runOperation(record: OperationRecord): Promise<void> {
    const { operation } = record;
    let inputJson = operation.inputJson;
    if (operation.kind === 'refund' || (operation.kind === 'invalid' && operation.chargeOperation !== null)) {
      const chargeOperation = (operation as { chargeOperation: number }).chargeOperation;
      await this.finished.get(chargeOperation);
      const chargeId = this.succeededChargeId(chargeOperation);
      if (chargeId === null) {
        record.skipped = `charge operation ${chargeOperation} has no succeeded charge`;
        return;
      }
      record.chargeId = chargeId;
      inputJson = inputJson.replace('"$chargeId"', JSON.stringify(chargeId));
    }
    const mutation = mutationOf(operation);
    const other = (1 - operation.api) as 0 | 1;
    const delivered = this.deliver(record, mutation, inputJson);
    if (operation.kind !== 'charge' || operation.reuse === null || operation.reuseInputJson === null) {
      await delivered;
      return;
    }
    const reuseInputJson = operation.reuseInputJson;
    if (operation.reuse.when === 'during') {
      // The other body races the first through the other api: whichever takes the key is the charge.
      const delayMs = operation.reuse.delayMs;
      await Promise.all([
        delivered,
        sleep(delayMs).then(() => this.send(record, 'reuse', mutation, reuseInputJson, other)),
      ]);
      return;
    }
    await delivered;
    if (record.sends.some((send) => finalAttempt(send)?.status === 200)) {
      await this.send(record, 'reuse', mutation, reuseInputJson, other);
    }
  }

  private async deliver(record: OperationRecord, mutation: Mutation, inputJson: string): Promise<void> {
    const { operation } = record;
    const other = (1 - operation.api) as 0 | 1;
    switch (operation.delivery) {
      case 'single':
        await this.send(record, 'first', mutation, inputJson, operation.api);
        break;
      case 'duplicate':
        await this.send(record, 'first', mutation, inputJson, operation.api);
        await this.send(record, 'duplicate', mutation, inputJson, other);
        break;
      case 'concurrent':
        await Promise.all([
          this.send(record, 'concurrent-a', mutation, inputJson, operation.api),
          this.send(record, 'concurrent-b', mutation, inputJson, other),
        ]);
        break;
      case 'abandon':
        await this.abandon(record, mutation, inputJson, operation.api, 20 + ((operation.index * 97) % 900));
        break;
    }
  }

  private succeededChargeId(index: number): string | null {
    const record = this.records.find((each) => each.operation.index === index);
    for (const send of record?.sends ?? []) {
      const answer = finalAttempt(send);
      // Whichever body took the key (the reuse may win a race), every 200 of one key is one charge.
      if (answer?.status === 200 && answer.data?.status === 'SUCCEEDED') return answer.id;
    }
    return null;
  }

  private body(mutation: Mutation, inputJson: string): string {
    return `{"query":${JSON.stringify(queries[mutation])},"variables":{"input":${inputJson}}}`;
  }

  private async send(record: OperationRecord, label: string, mutation: Mutation, inputJson: string, api: 0 | 1) {
    const send: SendRecord = { label, inputJson, attempts: [] };
    record.sends.push(send);
    const via = `api-${api + 1}`;
    await sendWithRetries(
      {
        url: `${this.options.apiUrls[api]}/graphql`,
        headers: { authorization: `Bearer ${this.options.apiKey}` },
        body: this.body(mutation, inputJson),
        idempotencyKey: record.operation.key,
        callSite: mutation,
      },
      {
        budget: this.budget,
        retry: { attemptsMax: attemptsFor(record.operation), baseMs: 100, capMs: 2_000, timeoutMs: 8_000 },
        fetch: this.recordingFetch(send, via, mutation),
      },
    ).catch(() => undefined); // The transcript holds the outcome, final or not.
  }

  private async abandon(record: OperationRecord, mutation: Mutation, inputJson: string, api: 0 | 1, afterMs: number) {
    const send: SendRecord = { label: `abandoned after ${afterMs} ms`, inputJson, attempts: [] };
    record.sends.push(send);
    const recording = this.recordingFetch(send, `api-${api + 1}`, mutation);
    await recording(`${this.options.apiUrls[api]}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${this.options.apiKey}`,
        'idempotency-key': record.operation.key,
        'idempotency-attempt': '1',
      },
      body: this.body(mutation, inputJson),
      signal: AbortSignal.timeout(afterMs),
    }).catch(() => undefined);
  }

  /** A fetch that writes each attempt to the send's transcript, then hands the answer to the SDK. */
  private recordingFetch(send: SendRecord, via: string, mutation: Mutation): typeof fetch {
    return async (url, init) => {
      const atMs = this.options.timeline.now();
      const attempt = Number((init?.headers as Record<string, string> | undefined)?.['idempotency-attempt'] ?? 1);
      try {
        const response = await fetch(url, init);
        const text = await response.text();
        let body: {
          data?: Record<string, Record<string, unknown> | null> | null;
          errors?: { extensions?: { code?: string } }[];
        } = {};
        try {
          body = JSON.parse(text) as typeof body;
        } catch {
          // Not JSON: recorded by status alone.
        }
        const data = body.data?.[mutation] ?? null;
        send.attempts.push({
          atMs,
          via,
          attempt,
          status: response.status,
          code: String(body.errors?.[0]?.extensions?.code ?? (response.ok ? 'ok' : `HTTP_${response.status}`)),
          retryAfter: response.headers.get('retry-after'),
          replayed: response.headers.get('idempotent-replayed'),
          id: typeof data?.id === 'string' ? data.id : null,
          data,
        });
        return new Response(text, { status: response.status, headers: response.headers });
      } catch (error) {
        const aborted = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
        send.attempts.push({
          atMs,
          via,
          attempt,
          status: aborted && send.label.startsWith('abandoned') ? 'abandoned' : 'network-error',
          code: error instanceof Error ? `${error.name}: ${error.message}`.slice(0, 120) : String(error),
          retryAfter: null,
          replayed: null,
          id: null,
          data: null,
        });
        throw error;
      }
    };
  }
}

/**
 * Enough attempts for an operation to outlive any one fault (a Postgres outage of up to 9 s). A
 * tok_timeout charge can never get a final answer: a few attempts show it is answered 503 with
 * Retry-After and never recorded; fourteen only lengthen every schedule by half a minute.
 */
function attemptsFor(operation: Operation): number {
  return operation.kind === 'charge' && operation.source === 'tok_timeout' ? 4 : 14;
}

export function mutationOf(operation: Operation): Mutation {
  if (operation.kind === 'charge') return 'createCharge';
  if (operation.kind === 'refund') return 'refundCharge';
  return operation.mutation;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One operation's transcript, for a failure report. */
export function formatRecord(record: OperationRecord): string {
  const { operation } = record;
  const head = `op ${operation.index} ${operation.kind}${operation.kind === 'charge' ? ` ${operation.source}` : ''} key=${operation.key} delivery=${operation.delivery} start=+${(operation.startMs / 1_000).toFixed(2)} s${record.chargeId === null ? '' : ` charge=${record.chargeId}`}${record.skipped === null ? '' : ` (skipped: ${record.skipped})`}`;
  const lines = [head];
  for (const send of record.sends) {
    lines.push(
      `    ${send.label}: input ${send.inputJson.length > 160 ? `${send.inputJson.slice(0, 160)}…` : send.inputJson}`,
    );
    for (const attempt of send.attempts) {
      lines.push(
        `      +${(attempt.atMs / 1_000).toFixed(2)} s ${attempt.via} #${attempt.attempt} → ${attempt.status} ${attempt.code}` +
          `${attempt.retryAfter === null ? '' : ` Retry-After: ${attempt.retryAfter}`}` +
          `${attempt.replayed === null ? '' : ` replayed: ${attempt.replayed}`}${attempt.id === null ? '' : ` id ${attempt.id}`}`,
      );
    }
  }
  return lines.join('\n');
}
