/**
 * The client's retry policy, without a server: full-jitter spread, Retry-After, which statuses
 * are retried, and the retry budget. A fake fetch stands in for the network here; the tests
 * against a real gateway are in gateway-client.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryTokenBucketStore, RetryBudget, fullJitterDelayMs, retryDelayMs } from '@payments-gateway/retry';
import {
  ClientRequestError,
  RetryBudgetExhaustedError,
  sendWithRetries,
  type AttemptRecord,
} from '@payments-gateway/client';

describe('full-jitter backoff', () => {
  it('draws every delay in [0, min(cap, base × 2^attempt)]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 30 }),
        fc.integer({ min: 1, max: 1_000 }),
        fc.integer({ min: 1, max: 60_000 }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        (attempt, baseMs, capMs, random) => {
          const delay = fullJitterDelayMs(attempt, { baseMs, capMs }, () => random);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThanOrEqual(Math.min(capMs, baseMs * 2 ** attempt));
        },
      ),
    );
  });

  it('spreads delays instead of synchronising them', () => {
    const delays = Array.from({ length: 2_000 }, () => fullJitterDelayMs(6, { baseMs: 100, capMs: 5_000 }));
    const distinct = new Set(delays).size;
    expect(distinct / delays.length).toBeGreaterThan(0.5);
    const mean = delays.reduce((sum, delay) => sum + delay, 0) / delays.length;
    expect(mean).toBeGreaterThan(2_000); // uniform on [0, 5000): mean 2500
    expect(mean).toBeLessThan(3_000);
    const quarters = [0, 1, 2, 3].map((q) => delays.filter((d) => d >= q * 1_250 && d < (q + 1) * 1_250).length);
    for (const count of quarters) expect(count).toBeGreaterThan(350);
  });

  it('waits at least Retry-After when the server sends it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 }), fc.integer({ min: 1, max: 30 }), (attempt, seconds) => {
        expect(retryDelayMs(attempt, { baseMs: 100, capMs: 5_000 }, seconds)).toBeGreaterThanOrEqual(seconds * 1_000);
      }),
    );
  });
});

function fakeFetch(answers: { status: number; code?: string; retryAfter?: number }[]) {
  const calls: { headers: Record<string, string> }[] = [];
  const impl = async (_url: string | URL | Request, init?: RequestInit) => {
    calls.push({ headers: init?.headers as Record<string, string> });
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)]!;
    if (answer.status === 0) throw new TypeError('fetch failed');
    const body =
      answer.status === 200
        ? {
            data: { createCharge: { id: 'ch_1' } },
            extensions: { idempotency: { key: 'k', replayed: calls.length > 1, firstRequestAt: null } },
          }
        : { errors: [{ message: 'no', extensions: { code: answer.code ?? 'X' } }] };
    return new Response(JSON.stringify(body), {
      status: answer.status,
      headers: answer.retryAfter === undefined ? {} : { 'retry-after': String(answer.retryAfter) },
    });
  };
  return { impl: impl as typeof fetch, calls };
}

const request = {
  url: 'http://gateway.invalid/graphql',
  headers: {},
  body: '{}',
  idempotencyKey: 'key-1',
  callSite: 'createCharge',
};
const noSleep = async () => undefined;
const budget = (capacity = 100) =>
  new RetryBudget(new MemoryTokenBucketStore({ capacity, refillPerSecond: 0 }), { depositPerSuccess: 0.5 });

describe('which answers the client retries', () => {
  it.each([
    [0, 'a network error'],
    [409, 'IDEMPOTENCY_KEY_IN_USE'],
    [429, 'RATE_LIMITED'],
    [500, 'INTERNAL'],
    [503, 'TRANSIENT_FAILURE'],
  ])('retries %s (%s) with the same key and a rising Idempotency-Attempt', async (status, code) => {
    const transcript: AttemptRecord[] = [];
    const fetch = fakeFetch([{ status, code }, { status, code }, { status: 200 }]);
    const answer = await sendWithRetries(request, {
      fetch: fetch.impl,
      budget: budget(),
      sleep: noSleep,
      transcript: (r) => transcript.push(r),
    });
    expect(answer.attempts).toBe(3);
    expect(fetch.calls.map((call) => call.headers['idempotency-key'])).toEqual(['key-1', 'key-1', 'key-1']);
    expect(fetch.calls.map((call) => call.headers['idempotency-attempt'])).toEqual(['1', '2', '3']);
    expect(transcript.map((record) => record.attempt)).toEqual([1, 2, 3]);
  });

  it.each([400, 401, 403, 404, 422])('never retries %i, and names the code', async (status) => {
    const fetch = fakeFetch([{ status, code: `CODE_${status}` }, { status: 200 }]);
    const failure = sendWithRetries(request, { fetch: fetch.impl, budget: budget(), sleep: noSleep });
    await expect(failure).rejects.toBeInstanceOf(ClientRequestError);
    await expect(failure).rejects.toMatchObject({ code: `CODE_${status}`, status, attempts: 1 });
    expect(fetch.calls).toHaveLength(1);
  });

  it('waits at least Retry-After seconds before the next attempt', async () => {
    const waits: number[] = [];
    const fetch = fakeFetch([{ status: 409, retryAfter: 3 }, { status: 200 }]);
    await sendWithRetries(request, { fetch: fetch.impl, budget: budget(), sleep: async (ms) => void waits.push(ms) });
    expect(waits).toHaveLength(1);
    expect(waits[0]).toBeGreaterThanOrEqual(3_000);
  });
});

describe('the retry budget', () => {
  it('stops retries when empty, failing fast with a clear error, and refills on success', async () => {
    const small = budget(2);
    const failing = fakeFetch([{ status: 503 }]);
    const failure = sendWithRetries(request, {
      fetch: failing.impl,
      budget: small,
      sleep: noSleep,
      retry: { attemptsMax: 10 },
    });
    await expect(failure).rejects.toBeInstanceOf(RetryBudgetExhaustedError);
    expect(failing.calls).toHaveLength(3); // the first attempt and two budgeted retries
    expect(await small.tokens('createCharge')).toBe(0);

    // Successes deposit 0.5 each: two successes buy one retry again.
    const ok = fakeFetch([{ status: 200 }]);
    await sendWithRetries(request, { fetch: ok.impl, budget: small, sleep: noSleep });
    await sendWithRetries(request, { fetch: ok.impl, budget: small, sleep: noSleep });
    expect(await small.tokens('createCharge')).toBe(1);
    const again = fakeFetch([{ status: 503 }, { status: 200 }]);
    const answer = await sendWithRetries(request, { fetch: again.impl, budget: small, sleep: noSleep });
    expect(answer.attempts).toBe(2);
  });

  it('keeps one bucket per call site', async () => {
    const shared = budget(1);
    const failing = fakeFetch([{ status: 503 }]);
    await expect(
      sendWithRetries(request, { fetch: failing.impl, budget: shared, sleep: noSleep }),
    ).rejects.toBeInstanceOf(RetryBudgetExhaustedError);
    const other = fakeFetch([{ status: 503 }, { status: 200 }]);
    const answer = await sendWithRetries(
      { ...request, callSite: 'refundCharge' },
      { fetch: other.impl, budget: shared, sleep: noSleep },
    );
    expect(answer.attempts).toBe(2);
  });
});
