/** Writes docs/configuration.md from the configuration schema. A test fails when it is stale. */
import { writeFile } from 'node:fs/promises';
import { renderConfigurationDoc } from './configuration-doc';

await writeFile(new URL('../docs/configuration.md', import.meta.url), renderConfigurationDoc());
process.stdout.write('docs/configuration.md written\n');
