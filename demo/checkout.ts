/**
 * The checkout page's code, bundled for the browser by the api role (outside production).
 * One Idempotency-Key per checkout attempt: kept in sessionStorage with the basket it was made
 * for, reused by every click and after a reload, replaced when the basket changes or after a
 * final outcome (approved, declined, key reused, bad input).
 */
import { ApolloClient, InMemoryCache } from '@apollo/client';
import { CreateChargeDocument, type AttemptRecord } from '@payments-gateway/client';
import { createGatewayLink } from '@payments-gateway/client/apollo';

interface DemoConfig {
  readonly apiKey: string;
  readonly dropResponseToggle: boolean;
}

const storageKey = 'checkout-idempotency-key';
const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function basket(): { amount: number; currency: string; source: string } {
  return {
    amount: Number(element<HTMLInputElement>('amount').value),
    currency: element<HTMLSelectElement>('currency').value,
    source: element<HTMLSelectElement>('source').value,
  };
}

/** The key for this basket: the stored one if the basket is the same, else a new one. */
function keyFor(current: object): string {
  const fingerprint = JSON.stringify(current);
  const stored = JSON.parse(sessionStorage.getItem(storageKey) ?? 'null') as { basket: string; key: string } | null;
  if (stored !== null && stored.basket === fingerprint) return stored.key;
  const key = crypto.randomUUID();
  sessionStorage.setItem(storageKey, JSON.stringify({ basket: fingerprint, key }));
  return key;
}

function finish(): void {
  sessionStorage.removeItem(storageKey);
}

function say(kind: string, text: string): void {
  const message = element('message');
  message.className = kind;
  message.textContent = text;
  message.dataset.outcome = kind;
}

const attempts: AttemptRecord[] = [];

function renderAttempts(): void {
  element('attempts').innerHTML = attempts
    .map(
      (record) =>
        `<tr><td>${record.attempt}</td><td>${record.delayMs} ms</td><td>${record.retryAfterSeconds ?? '—'}</td>` +
        `<td>${record.status}</td><td>${record.reason}</td><td>${record.replayed === null ? '—' : record.replayed ? 'yes' : 'no'}</td></tr>`,
    )
    .join('');
}

async function main(): Promise<void> {
  const config = (await (await fetch('/demo/config.json')).json()) as DemoConfig;
  element('drop-toggle').hidden = !config.dropResponseToggle;
  const client = new ApolloClient({
    link: createGatewayLink({
      uri: '/graphql',
      headers: () => ({
        authorization: `Bearer ${config.apiKey}`,
        ...(element<HTMLInputElement>('drop').checked ? { 'x-demo-drop-response': '1' } : {}),
      }),
      transcript: (record) => {
        attempts.push(record);
        renderAttempts();
      },
      retry: { baseMs: 200, capMs: 2_000, attemptsMax: 6 },
    }),
    cache: new InMemoryCache(),
  });

  element<HTMLButtonElement>('pay').addEventListener('click', () => {
    const input = basket();
    const idempotencyKey = keyFor(input);
    element('key').textContent = idempotencyKey;
    say('pending', 'Processing your payment…');
    client
      // The SDK's document, generated from schema.graphql: `result.data` is typed by it.
      .mutate({ mutation: CreateChargeDocument, variables: { input }, context: { idempotencyKey } })
      .then((result) => {
        const charge = result.data?.createCharge;
        if (charge === undefined) throw new Error('the gateway answered without a charge');
        const replayed =
          (result.extensions as { idempotency?: { replayed?: boolean } } | undefined)?.idempotency?.replayed ?? false;
        finish();
        element('charge').textContent =
          `Charge ${charge.id}: ${charge.status}, ${charge.amount} ${charge.currency}. Replay: ${replayed ? 'yes' : 'no'}.`;
        element('charge').dataset.chargeId = charge.id;
        element('charge').dataset.replayed = String(replayed);
        if (charge.status === 'SUCCEEDED') say('approved', 'Payment approved. Thank you!');
        else say('declined', `Your card was declined (${charge.failureCode}). You have not been charged.`);
      })
      .catch((error: { code?: string; message?: string }) => {
        switch (error.code) {
          case 'IDEMPOTENCY_KEY_IN_USE':
            say('pending', 'Your payment is still being processed. Please wait a moment; do not pay again.');
            break;
          case 'IDEMPOTENCY_KEY_REUSED':
            finish();
            say('reused', 'This checkout was already used for a different basket. Please start again.');
            break;
          case 'BAD_USER_INPUT':
            finish();
            say('declined', `Please check your details: ${error.message ?? ''}`);
            break;
          default:
            // Transient: keep the key, so trying again cannot charge twice.
            say('later', 'We could not reach the payment service. Please try again in a moment.');
        }
      });
  });
}

void main();
