import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { printAdminSchema } from '../../src/admin/admin-schema';
import { printPublicSchema } from '../../src/graphql/schema';

describe('the checked-in schema files', () => {
  it('schema.graphql matches the public schema the code builds (run `npm run schema:print` after changing it)', async () => {
    expect(await readFile(new URL('../../schema.graphql', import.meta.url), 'utf8')).toBe(await printPublicSchema());
  });

  it('admin-schema.graphql matches the operators’ schema', async () => {
    expect(await readFile(new URL('../../admin-schema.graphql', import.meta.url), 'utf8')).toBe(
      await printAdminSchema(),
    );
  });
});
