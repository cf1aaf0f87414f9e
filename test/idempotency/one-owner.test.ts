/**
 * One owner for the key's row (docs/contract.md §3): eslint refuses, anywhere in src/ but
 * src/idempotency/key-row.ts, a statement that changes idempotency_keys or writes
 * idempotency_audit, a copy of the lease's fencing predicate, and Prisma writes to either table.
 */
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint();
const rule = 'no-restricted-syntax';

async function refused(filePath: string, source: string): Promise<boolean> {
  const [result] = await eslint.lintText(source, { filePath });
  return (result?.messages ?? []).some((message) => message.ruleId === rule);
}

const statements = [
  'void db.$executeRaw`UPDATE idempotency_keys SET locked_until = NULL WHERE id = ${id}`;',
  'void db.$queryRaw`WITH c AS (\n  UPDATE  idempotency_keys k SET state = 1) SELECT 1`;',
  'void db.$executeRaw`INSERT INTO idempotency_audit (key) VALUES (${id})`;',
  'void db.$executeRaw`DELETE FROM idempotency_keys WHERE id = ${id}`;',
  'void db.$executeRaw`UPDATE charges SET x = 1 WHERE id = ${id} AND lock_token = ${id}`;',
  'void db.idempotencyKey.update({ where: { id }, data: {} });',
  'void context.db.idempotencyAudit.createMany({ data: [] });',
];

describe('a write to the key row outside its owner', () => {
  it.each(statements)('is refused in a use case: %s', async (statement) => {
    expect(await refused('src/charges/example.ts', `const db: any = {}; const id = 1;\n${statement}\n`)).toBe(true);
  });

  it('is allowed in src/idempotency/key-row.ts, and reads are allowed anywhere', async () => {
    expect(await refused('src/idempotency/key-row.ts', `const db: any = {}; const id = 1;\n${statements[0]}\n`)).toBe(
      false,
    );
    expect(
      await refused(
        'src/admin/example.ts',
        'const db: any = {}; const id = 1;\nvoid db.$queryRaw`SELECT lock_token FROM idempotency_keys WHERE id = ${id}`;\nvoid db.idempotencyKey.findUnique({ where: { id } });\n',
      ),
    ).toBe(false);
  });
});
