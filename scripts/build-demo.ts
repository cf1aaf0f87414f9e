/**
 * Bundles the checkout demo's script (demo/checkout.ts) into dist/public/checkout.js with
 * esbuild, at build time: the gateway only serves the file (src/demo/demo-router.ts) and never
 * carries a bundler at run time. `npm run build` runs it; so do `npm start` outside production
 * and the tests' global setup. Usage: tsx scripts/build-demo.ts
 */
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const demoBundlePath = path.join(repoRoot, 'dist', 'public', 'checkout.js');

export async function buildDemo(): Promise<void> {
  await build({
    entryPoints: [path.join(repoRoot, 'demo', 'checkout.ts')],
    outfile: demoBundlePath,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await buildDemo();
}
