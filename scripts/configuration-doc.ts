/**
 * docs/configuration.md, rendered from the configuration schema (src/config.ts): each variable's
 * allowed values, default, production rule and description come from the schema itself, so the
 * file cannot drift from the code. `npm run config:docs` writes it; a test fails when it is stale.
 */
import { settingRules, settings, variableOf, type SettingRule } from '../src/config';
import { settingDocs } from '../src/platform/environment';

const preamble = `# Configuration

<!-- Generated from src/config.ts by \`npm run config:docs\`: do not edit by hand (a test fails when it is stale). -->

The environment is read once at start into a typed, frozen object (\`src/config.ts\`, one zod schema
that also writes this file). A bad value stops the process with
\`Configuration error: <VARIABLE>: <problem>\`, naming every bad variable. An empty variable counts as
unset. The names in docs/contract.md §8 are a contract for scripts and deployments.
`;

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function sentence(rule: SettingRule): string {
  return `${rule.rule.charAt(0).toUpperCase()}${rule.rule.slice(1)}.`;
}

function row(key: keyof typeof settings): string {
  const doc = settingDocs.get(settings[key])!;
  const rules = settingRules.filter((rule) => rule.setting === key);
  const production = [doc.production, ...rules.filter((rule) => rule.inProduction).map(sentence)]
    .filter((part) => part !== undefined)
    .join(' ');
  const description = [doc.description, ...rules.filter((rule) => !rule.inProduction).map(sentence)].join(' ');
  const cells = [`\`${variableOf(key)}\``, doc.type, doc.default, production || '—', description];
  return `| ${cells.map(cell).join(' | ')} |`;
}

export function renderConfigurationDoc(): string {
  const keys = Object.keys(settings).filter((key): key is keyof typeof settings => Object.hasOwn(settings, key));
  return [
    preamble,
    '| variable | allowed values | default | in production | description |',
    '|---|---|---|---|---|',
    ...keys.map(row),
    '',
  ].join('\n');
}
