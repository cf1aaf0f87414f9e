import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { printPublicSchema } from '../../src/graphql/schema';

describe('schema.graphql', () => {
  it('matches the schema the code builds (run `npm run schema:print` after changing it)', async () => {
    const checkedIn = await readFile(new URL('../../schema.graphql', import.meta.url), 'utf8');
    expect(checkedIn).toBe(await printPublicSchema());
  });
});
