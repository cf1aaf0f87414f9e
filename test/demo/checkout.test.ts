/**
 * The /demo checkout page in a real browser (Debian's Chromium, driven by playwright-core):
 * double clicks (also 100 ms apart: one charge id shown, no 409), five fast clicks, a lost response, a decline and a reload mid-checkout each end
 * in one charge, counted in the database. Each test saves a screenshot to test-artifacts/.
 *
 * No fixed sleeps (docs/testing.md): a test clicks only once the page's script is ready, and
 * counts charges only once every mutation it started has had its last answer, so no request of
 * its own can still be on its way to the gateway.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { waitFor } from '../helpers/ledger';

const chromiumPath = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((candidate) => existsSync(candidate));
const demoKey = 'sk_demo_browser_tests_0123456789';
let environment: TestEnvironment;
let gateway: TestGateway;
let browser: Browser;
let page: Page | undefined;

beforeAll(async () => {
  if (chromiumPath === undefined) throw new Error('Chromium is not installed: apt-get install chromium (.ci/run does)');
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, {
    ROLE: 'api',
    FAULTS: 'drop_response',
    DEMO_MERCHANT_API_KEY: demoKey,
  });
  await environment.database.pool.query(
    "INSERT INTO merchants (id, name, api_key_hash) VALUES ('mer_demo', 'Demo merchant', encode(sha256($1::bytea), 'hex'))",
    [demoKey],
  );
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  mkdirSync('test-artifacts', { recursive: true });
}, 60_000);

afterEach(async (context) => {
  if (page === undefined) return;
  await page.screenshot({
    path: `test-artifacts/checkout-${context.task.name.replace(/\W+/g, '-').slice(0, 60)}.png`,
    fullPage: true,
  });
  await page.close();
  page = undefined;
});

afterAll(async () => {
  await browser?.close();
  await gateway?.stop();
  await environment?.cleanup();
});

const charges = () => environment.database.count("SELECT count(*) FROM charges WHERE merchant_id = 'mer_demo'");

/**
 * The Pay handler exists only once the page's module has fetched /demo/config.json. It un-hides
 * the lose-the-response toggle (on here: FAULTS=drop_response) in the same synchronous step that
 * attaches the handler, so a visible toggle means a click will be heard. A click before that is
 * lost, and the page still shows no key.
 */
async function waitForPageReady(current: Page): Promise<void> {
  await current.locator('#drop-toggle').waitFor({ state: 'visible', timeout: 20_000 });
}

async function fillBasket(current: Page, amount: number, source: string): Promise<void> {
  await waitForPageReady(current);
  await current.fill('#amount', String(amount));
  await current.selectOption('#source', source);
}

async function openCheckout(amount: number, source = 'tok_visa'): Promise<Page> {
  page = await browser.newPage();
  await page.goto(`${gateway.url}/demo`);
  await fillBasket(page, amount, source);
  return page;
}

/**
 * Waits until `mutations` of the page's mutations have had their last attempt, read from the
 * attempts table the page renders from the client's transcript: an answer the client does not
 * retry (not a network error, 409, 429 or 5xx), or the sixth attempt. The retry budget (20
 * tokens, refilled at 1 a second) covers five mutations' five retries each, so each one ends in
 * such a row. After that no request of this page can still reach the gateway.
 */
async function waitForLastAttempts(current: Page, mutations: number): Promise<void> {
  await current.waitForFunction(
    (expected) =>
      Array.from(document.querySelectorAll('#attempts tr')).filter((row) => {
        const cells = Array.from(row.querySelectorAll('td'), (cell) => cell.textContent ?? '');
        const status = cells[3] ?? '';
        const retried = status === 'network-error' || ['409', '429'].includes(status) || Number(status) >= 500;
        return !retried || cells[0] === '6';
      }).length >= expected,
    mutations,
    { timeout: 30_000 },
  );
}

/** Waits until the gateway has finished every key of the demo merchant (none still in progress). */
async function waitForKeysFinished(): Promise<void> {
  await waitFor(
    async () =>
      (await environment.database.count(
        "SELECT count(*) FROM idempotency_keys WHERE merchant_id = 'mer_demo' AND state = 'IN_PROGRESS'",
      )) === 0,
    20_000,
    'every demo key to finish',
  );
}

async function outcome(): Promise<string> {
  if (page === undefined) throw new Error('no page open');
  await page.waitForFunction(
    () =>
      ['approved', 'declined', 'reused', 'later'].includes(document.getElementById('message')?.dataset.outcome ?? ''),
    null,
    { timeout: 20_000 },
  );
  return (await page.getAttribute('#message', 'data-outcome')) ?? '';
}

describe('the checkout page', () => {
  it('turns a double click into one charge and one result', async () => {
    const before = await charges();
    const page = await openCheckout(1_101, 'tok_slow');
    await page.dblclick('#pay');
    expect(await outcome()).toBe('approved');
    await waitFor(
      async () => (await page.getAttribute('#charge', 'data-charge-id')) !== null,
      10_000,
      'the charge on the page',
    );
    await waitForLastAttempts(page, 2); // the second click's answer lands too
    await waitForKeysFinished();
    expect(await charges()).toBe(before + 1);
    expect(await page.locator('#charge').count()).toBe(1);
  });

  it('shows one charge id for two clicks 100 ms apart on a slow card, and no 409 reaches the page', async () => {
    const before = await charges();
    const page = await openCheckout(1_106, 'tok_slow');
    // Record every charge id and message the page shows, then click twice 100 ms apart in the
    // page itself (a gap the browser keeps even when the test runner is slow; tok_slow takes 800 ms).
    await page.evaluate(() => {
      const shown = { chargeIds: [] as string[], messages: [] as string[] };
      Object.assign(window, { shown });
      const charge = document.getElementById('charge')!;
      const message = document.getElementById('message')!;
      new MutationObserver(() => {
        if (charge.dataset.chargeId !== undefined) shown.chargeIds.push(charge.dataset.chargeId);
        shown.messages.push(message.textContent ?? '');
      }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
      const pay = document.getElementById('pay')!;
      pay.click();
      setTimeout(() => pay.click(), 100);
    });
    expect(await outcome()).toBe('approved');
    await waitForLastAttempts(page, 2);
    await waitForKeysFinished();

    const shown = await page.evaluate(
      () => (window as unknown as { shown: { chargeIds: string[]; messages: string[] } }).shown,
    );
    // Both answers name one charge: the second click waited on the server for the first.
    expect(new Set(shown.chargeIds).size).toBe(1);
    expect(shown.messages.some((text) => text.includes('still being processed'))).toBe(false);
    const attempts = await page
      .locator('#attempts tr')
      .evaluateAll((rows) =>
        rows.map((row) => Array.from(row.querySelectorAll('td'), (cell) => cell.textContent ?? '')),
      );
    // One attempt per click, each a 200: no 409 reached the client, so it had nothing to retry.
    expect(attempts.map((cells) => cells[3])).toEqual(['200', '200']);
    expect(attempts.map((cells) => cells[5]).sort()).toEqual(['no', 'yes']);
    expect(await charges()).toBe(before + 1);
  });

  it('turns five fast clicks into one charge', async () => {
    const before = await charges();
    const page = await openCheckout(1_102, 'tok_slow');
    // Five clicks in one task of the page: none can see the first answer and start a new key,
    // however slowly a loaded machine delivers separate input events.
    await page.evaluate(() => {
      for (let click = 0; click < 5; click += 1) document.getElementById('pay')?.click();
    });
    expect(await outcome()).toBe('approved');
    await waitForLastAttempts(page, 5);
    await waitForKeysFinished();
    expect(await charges()).toBe(before + 1);
    const keys = await environment.database.count(
      "SELECT count(DISTINCT key) FROM idempotency_audit WHERE merchant_id = 'mer_demo' AND request_payload LIKE '%1102%'",
    );
    expect(keys).toBe(1);
  });

  it('recovers a lost response by retrying with the same key, and shows the replay', async () => {
    const before = await charges();
    const page = await openCheckout(1_103);
    await page.check('#drop');
    await page.click('#pay');
    expect(await outcome()).toBe('approved');
    expect(await page.getAttribute('#charge', 'data-replayed')).toBe('true');
    const rows = await page.locator('#attempts tr').allTextContents();
    expect(rows[0]).toContain('network-error');
    expect(await charges()).toBe(before + 1);
  });

  it('shows a decline, and a second click does not charge again', async () => {
    const before = await charges();
    const page = await openCheckout(1_104, 'tok_chargeDeclined');
    await page.click('#pay');
    expect(await outcome()).toBe('declined');
    expect(await page.textContent('#message')).toContain('declined');
    const chargesAfterDecline = await charges();
    expect(chargesAfterDecline).toBe(before + 1);
    expect(
      await environment.database.count(
        "SELECT count(*) FROM charges WHERE merchant_id = 'mer_demo' AND status = 'FAILED' AND amount = 1104",
      ),
    ).toBe(1);
    // The decline was final, so the page started a new key; a second click is a new attempt
    // with the same declined card: declined again, never a success, and one charge row per attempt.
    await page.click('#pay');
    expect(await outcome()).toBe('declined');
    await waitForLastAttempts(page, 2);
    expect(
      await environment.database.count(
        "SELECT count(*) FROM charges WHERE merchant_id = 'mer_demo' AND status = 'FAILED' AND amount = 1104",
      ),
    ).toBe(2);
    expect(
      await environment.database.count(
        "SELECT count(*) FROM charges WHERE merchant_id = 'mer_demo' AND status = 'SUCCEEDED' AND amount = 1104",
      ),
    ).toBe(0);
  });

  it('keeps the key across a reload in the middle of a slow checkout: one charge', async () => {
    const before = await charges();
    const page = await openCheckout(1_105, 'tok_slow');
    await page.click('#pay');
    const key = (await page.textContent('#key')) ?? '';
    expect(key).toMatch(/^[0-9a-f-]{36}$/);
    // Reload only once the first request holds the key at the gateway: the middle of the checkout.
    await waitFor(
      async () =>
        (await environment.database.count(
          "SELECT count(*) FROM idempotency_keys WHERE merchant_id = 'mer_demo' AND key = $1",
          [key],
        )) === 1,
      20_000,
      'the first request to claim the key',
    );
    await page.reload();
    await fillBasket(page, 1_105, 'tok_slow');
    await page.click('#pay');
    expect(await page.textContent('#key')).toBe(key);
    expect(await outcome()).toBe('approved');
    await waitForKeysFinished();
    expect(await charges()).toBe(before + 1);
    expect(
      await environment.database.count(
        'SELECT count(*) FROM charges c JOIN idempotency_keys k ON k.id = c.idempotency_key_id WHERE k.key = $1',
        [key],
      ),
    ).toBe(1);
  });
});

describe('where the page is served', () => {
  it('is off in production, and its lose-the-response toggle works only with fault injection on', async () => {
    const production = await startTestGateway(environment, { ROLE: 'api', NODE_ENV: 'production' });
    const plain = await startTestGateway(environment, { ROLE: 'api', DEMO_MERCHANT_API_KEY: demoKey });
    try {
      expect((await fetch(`${production.url}/demo`)).status).toBe(404);
      expect(await (await fetch(`${plain.url}/demo/config.json`)).json()).toEqual({
        apiKey: demoKey,
        dropResponseToggle: false,
      });
      // Without the fault, the header is ignored: the answer arrives.
      const answer = await fetch(`${plain.url}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${demoKey}`,
          'idempotency-key': 'toggle-off',
          'x-demo-drop-response': '1',
        },
        body: JSON.stringify({
          query: 'mutation { createCharge(input: {amount: 5, currency: "USD", source: "tok_visa"}) { status } }',
        }),
      });
      expect(answer.status).toBe(200);
    } finally {
      await production.stop();
      await plain.stop();
    }
  });
});
