/**
 * The client SDK's documents and types are generated from schema.graphql by GraphQL Code Generator
 * (packages/client/codegen.ts) and committed. This regenerates them into a temporary folder with
 * the same configuration and fails when the committed file differs: after changing the schema or
 * an operation, run `npm run client:codegen`.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { generate } from '@graphql-codegen/cli';
import { afterAll, describe, expect, it } from 'vitest';
import { codegenConfig } from '../../packages/client/codegen';

const committedPath = new URL('../../packages/client/src/generated/graphql.ts', import.meta.url);
let folder: string | undefined;
afterAll(async () => {
  if (folder !== undefined) await rm(folder, { recursive: true, force: true });
});

describe('the client SDK’s generated documents and types', () => {
  it('match what GraphQL Code Generator makes from schema.graphql now (run `npm run client:codegen`)', async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'client-codegen-'));
    const outputFile = path.join(folder, 'graphql.ts');
    await generate(codegenConfig(outputFile), true);
    expect(await readFile(outputFile, 'utf8')).toBe(await readFile(committedPath, 'utf8'));
  });

  it('type every field the schema gives a refund (the hand-written type had drifted)', async () => {
    const committed = await readFile(committedPath, 'utf8');
    const refundFields = /export type RefundFieldsFragment = \{([^}]*)\}/.exec(committed)?.[1] ?? '';
    for (const field of ['id', 'chargeId', 'amount', 'currency', 'status', 'failureCode', 'reason', 'createdAt']) {
      expect(refundFields).toContain(`${field}:`);
    }
  });
});
