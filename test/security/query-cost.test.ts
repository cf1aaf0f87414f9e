/**
 * What a query may cost (docs/security.md): the fragment bomb, aliases × `first`, depth, and the
 * same limits for introspection and `__`-only operations, all over HTTP against a running gateway.
 */
import { getIntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { chargeSelection, createCharge, postGraphql } from '../helpers/http';

let environment: TestEnvironment;
let gateway: TestGateway;

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, { ROLE: 'api' });
  const charge = await createCharge(gateway.url, gateway.apiKey, 'cost-seed', {
    amount: 100,
    currency: 'USD',
    source: 'tok_visa',
  });
  expect(charge.status).toBe(200);
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

/** A fragment that spreads the next one twice, `levels` deep: 2^levels selections if expanded per path. */
function fragmentBomb(onType: 'Query' | 'Charge', levels: number, leaf: string): string {
  const fragments = Array.from({ length: levels }, (_, level) =>
    level === levels - 1
      ? `fragment F${level} on ${onType} { ${leaf} }`
      : `fragment F${level} on ${onType} { ...F${level + 1} ...F${level + 1} }`,
  );
  const operation = onType === 'Query' ? 'query Bomb { ...F0 }' : 'query Bomb { charge(id: "x") { ...F0 } }';
  return [operation, ...fragments].join('\n');
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const startedAt = performance.now();
  const value = await work();
  return { value, ms: performance.now() - startedAt };
}

const auth = () => ({ authorization: `Bearer ${gateway.apiKey}` });

describe('when a fragment spreads the next one twice, 30 levels deep', () => {
  // Expanded per path this is 2^30 selections: hours of event loop for the old guard.
  const bombs = {
    'an authenticated query on Charge': { query: fragmentBomb('Charge', 30, 'id'), headers: auth },
    'a __-only query with no key': { query: fragmentBomb('Query', 30, '__typename'), headers: () => ({}) },
  };

  for (const [name, bomb] of Object.entries(bombs)) {
    it(`refuses ${name} with 400 within 100 ms, and /healthz stays fast meanwhile`, async () => {
      expect(bomb.query.length).toBeLessThan(1_600);
      const bombCpuMs: number[] = [];
      for (let round = 0; round < 5; round += 1) {
        const cpuBefore = process.cpuUsage();
        const [answer, health] = await Promise.all([
          timed(() => postGraphql(gateway.url, { query: bomb.query }, bomb.headers())),
          timed(() => fetch(`${gateway.url}/healthz`)),
        ]);
        const cpu = process.cpuUsage(cpuBefore);
        expect(answer.value.status).toBe(400);
        expect(answer.value.body.errors?.[0]?.message).toMatch(/too many selections/);
        expect(answer.value.body.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
        expect(health.value.status).toBe(200);
        // Wall-clock bounds generous enough for a machine shared by many test runs.
        expect(answer.ms).toBeLessThan(2_000);
        expect(health.ms).toBeLessThan(2_000);
        bombCpuMs.push((cpu.user + cpu.system) / 1_000);
      }
      // The gateway runs in this process: its CPU time (client side included) is what the request
      // cost, and other processes on the machine cannot inflate it. The old guard spent seconds.
      expect(Math.min(...bombCpuMs)).toBeLessThan(100);
    });
  }
});

describe('when a query asks for many pages', () => {
  const page = (alias: string, first: string) =>
    `${alias}: charges(first: ${first}) { edges { cursor node { ${chargeSelection} } } pageInfo { hasNextPage endCursor } }`;

  it('refuses 200 aliases of charges(first: 100) with 400 before any resolver runs', async () => {
    const query = `{ ${Array.from({ length: 200 }, (_, index) => page(`a${index}`, '100')).join(' ')} }`;
    const answer = await postGraphql(gateway.url, { query }, auth());
    expect(answer.status).toBe(400);
    expect(answer.body.data ?? null).toBeNull();
    expect(answer.text.length).toBeLessThan(2_000);
  });

  it('counts each alias times its first, under the alias limit too, with first as a literal or a variable', async () => {
    const literal = `{ ${Array.from({ length: 10 }, (_, index) => page(`a${index}`, '100')).join(' ')} }`;
    const refused = await postGraphql(gateway.url, { query: literal }, auth());
    expect(refused.status).toBe(400);
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    expect(refused.body.errors?.[0]?.message).toMatch(/costs \d+ points; at most 5000/);

    const withVariable = `query Pages($n: Int) { ${Array.from({ length: 10 }, (_, index) => page(`a${index}`, '$n')).join(' ')} }`;
    const large = await postGraphql(gateway.url, { query: withVariable, variables: { n: 100 } }, auth());
    expect(large.status).toBe(400);
    expect(large.body.errors?.[0]?.message).toMatch(/costs \d+ points/);
    // The same document with a small page passes: the cost follows the variables, not a cache.
    const small = await postGraphql(gateway.url, { query: withVariable, variables: { n: 2 } }, auth());
    expect(small.status).toBe(200);
    expect(small.body.errors).toBeUndefined();
  });

  it('keeps no cost per document that variables can change: a small page first, then a large one is refused', async () => {
    // The guard keeps a cost within the limit per parsed document only when no variable sits in a
    // `first` argument or a directive (src/graphql/query-limits.ts).
    const withFirst = `query Later($n: Int) { ${Array.from({ length: 10 }, (_, index) => page(`b${index}`, '$n')).join(' ')} }`;
    expect((await postGraphql(gateway.url, { query: withFirst, variables: { n: 2 } }, auth())).status).toBe(200);
    const large = await postGraphql(gateway.url, { query: withFirst, variables: { n: 100 } }, auth());
    expect(large.status).toBe(400);
    expect(large.body.errors?.[0]?.message).toMatch(/costs \d+ points/);

    const pages = Array.from({ length: 10 }, (_, index) => page(`c${index}`, '100')).join(' ');
    const withDirective = `query Skipped($skip: Boolean!) { ... @skip(if: $skip) { ${pages} } }`;
    const skipped = await postGraphql(gateway.url, { query: withDirective, variables: { skip: true } }, auth());
    expect(skipped.status).toBe(200);
    const included = await postGraphql(gateway.url, { query: withDirective, variables: { skip: false } }, auth());
    expect(included.status).toBe(400);
    expect(included.body.errors?.[0]?.message).toMatch(/costs \d+ points/);

    // A document no variable can change answers the same every time, from the kept cost.
    const fixed = `query Fixed { ${page('d', '2')} }`;
    for (let round = 0; round < 2; round += 1) {
      const answer = await postGraphql(gateway.url, { query: fixed }, auth());
      expect(answer.status).toBe(200);
    }
  });

  it('lets a full page of 100 charges with every field through', async () => {
    const answer = await postGraphql(gateway.url, { query: `{ ${page('all', '100')} }` }, auth());
    expect(answer.status).toBe(200);
    expect(answer.body.errors).toBeUndefined();
  });

  it('refuses more aliases than QUERY_ALIASES_MAX even when each is cheap', async () => {
    const query = `{ ${Array.from({ length: 31 }, (_, index) => `a${index}: charge(id: "x") { id }`).join(' ')} }`;
    const answer = await postGraphql(gateway.url, { query }, auth());
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.message).toMatch(/Aliases limit of 30/);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
  });
});

describe('when the operation is introspection', () => {
  it('applies the depth limit to __schema as to any field', async () => {
    const nested = Array.from({ length: 18 }, () => 'ofType {').join(' ');
    const query = `{ __schema { types { fields { type { ${nested} name ${'}'.repeat(18)} } } } } }`;
    const answer = await postGraphql(gateway.url, { query });
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.message).toMatch(/depth limit of 16/);
  });

  it('still answers the standard introspection query outside production', async () => {
    const answer = await postGraphql(gateway.url, { query: getIntrospectionQuery() });
    expect(answer.body.errors).toBeUndefined();
    expect(answer.status).toBe(200);
  });
});

describe('when operationName names no operation of the document', () => {
  it('answers 400 BAD_REQUEST, with or without a key', async () => {
    for (const headers of [auth(), {}]) {
      const response = await fetch(`${gateway.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ query: 'query A { __typename } query B { __typename }', operationName: 'C' }),
      });
      const body = (await response.json()) as { errors?: { extensions?: { code?: string } }[] };
      expect(response.status).toBe(400);
      expect(body.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    }
  });
});
