/** Writes schema.graphql from the type-graphql schema. A test fails when the file is stale. */
import { writeFile } from 'node:fs/promises';
import { printPublicSchema } from '../src/graphql/schema';

await writeFile(new URL('../schema.graphql', import.meta.url), await printPublicSchema());
process.stdout.write('schema.graphql written\n');
