/**
 * The public schema, built from type-graphql classes. `npm run schema:print` writes it to
 * schema.graphql; test/graphql/schema-file.test.ts fails when that file is stale.
 */
import 'reflect-metadata';
import { printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema } from 'type-graphql';
import { ChargeResolver } from './charge-resolver';

let cached: Promise<GraphQLSchema> | undefined;

export function buildPublicSchema(): Promise<GraphQLSchema> {
  cached ??= buildSchema({ resolvers: [ChargeResolver], validate: false, emitSchemaFile: false });
  return cached;
}

export async function printPublicSchema(): Promise<string> {
  return `${printSchema(await buildPublicSchema())}\n`;
}
