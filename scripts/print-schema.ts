/** Writes schema.graphql and admin-schema.graphql from the type-graphql schemas. A test fails when either is stale. */
import 'reflect-metadata';
import { writeFile } from 'node:fs/promises';
import { printAdminSchema } from '../src/admin/admin-schema';
import { printPublicSchema } from '../src/graphql/schema';

await writeFile(new URL('../schema.graphql', import.meta.url), await printPublicSchema());
await writeFile(new URL('../admin-schema.graphql', import.meta.url), await printAdminSchema());
process.stdout.write('schema.graphql and admin-schema.graphql written\n');
