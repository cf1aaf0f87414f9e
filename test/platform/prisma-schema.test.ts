/**
 * schema.prisma and the migrated database must agree: every model maps to a table, every field to
 * a column of a compatible type and nullability, and no table or column is missing from Prisma.
 * The migrations are the truth; Prisma is only the client (docs/contract.md §10).
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database';

interface PrismaField {
  column: string;
  type: string;
  optional: boolean;
}

function parsePrismaSchema(text: string): Map<string, Map<string, PrismaField>> {
  const tables = new Map<string, Map<string, PrismaField>>();
  for (const match of text.matchAll(/model\s+(\w+)\s*\{([\s\S]*?)\n\}/g)) {
    const [, model, body] = match as unknown as [string, string, string];
    const table = body.match(/@@map\("(\w+)"\)/)?.[1] ?? model;
    const fields = new Map<string, PrismaField>();
    for (const line of body.split('\n')) {
      const field = line.trim().match(/^(\w+)\s+(\w+)(\??)(\[\])?\s*(.*)$/);
      if (field === null || line.trim().startsWith('@@')) continue;
      const [, name, type, optional, list, attributes] = field as unknown as [
        string,
        string,
        string,
        string,
        string | undefined,
        string,
      ];
      if (
        list !== undefined ||
        attributes.includes('@relation') ||
        (/^[A-Z]/.test(type) && !['String', 'Int', 'BigInt', 'Boolean', 'DateTime'].includes(type))
      )
        continue;
      const column = attributes.match(/@map\("(\w+)"\)/)?.[1] ?? name;
      fields.set(column, { column, type, optional: optional === '?' });
    }
    tables.set(table, fields);
  }
  return tables;
}

const compatibleTypes: Record<string, string[]> = {
  String: ['text', 'character', 'uuid'],
  Int: ['integer'],
  BigInt: ['bigint'],
  Boolean: ['boolean'],
  DateTime: ['timestamp with time zone'],
};

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(inject('databaseUrl'));
});
afterAll(async () => {
  await database?.drop();
});

describe('schema.prisma', () => {
  it('agrees with the migrated database, table by table and column by column', async () => {
    const prisma = parsePrismaSchema(await readFile(new URL('../../prisma/schema.prisma', import.meta.url), 'utf8'));
    const { rows } = await database.pool.query<{
      table_name: string;
      column_name: string;
      data_type: string;
      is_nullable: string;
    }>(
      `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY table_name, ordinal_position`,
    );
    const databaseTables = new Map<string, typeof rows>();
    for (const row of rows) databaseTables.set(row.table_name, [...(databaseTables.get(row.table_name) ?? []), row]);

    expect([...prisma.keys()].sort()).toEqual([...databaseTables.keys()].sort());
    for (const [table, columns] of databaseTables) {
      const fields = prisma.get(table);
      expect(fields, table).toBeDefined();
      expect([...(fields?.keys() ?? [])].sort(), table).toEqual(columns.map((column) => column.column_name).sort());
      for (const column of columns) {
        const field = fields?.get(column.column_name);
        expect(
          compatibleTypes[field?.type ?? '']?.some((type) => column.data_type.startsWith(type)),
          `${table}.${column.column_name}`,
        ).toBe(true);
        expect(field?.optional, `${table}.${column.column_name} nullability`).toBe(column.is_nullable === 'YES');
      }
    }
  });
});
