/**
 * The checkout demo at /demo, for frontend developers (outside production only): a static page,
 * its script (bundled at build time by scripts/build-demo.ts into dist/public/), and its settings (the demo merchant's
 * key, and whether the lose-the-response toggle works). The toggle works only when fault
 * injection (`FAULTS=drop_response`) is on: the api then cuts the connection of a first attempt
 * that carries `X-Demo-Drop-Response: 1`, after its answer is ready (the charge committed).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';

// Two folders below the repository root both in src/ (tsx) and in dist/ (compiled).
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const demoFolder = path.join(repoRoot, 'demo');
const bundlePath = path.join(repoRoot, 'dist', 'public', 'checkout.js');

export interface DemoOptions {
  readonly apiKey: string | undefined;
  readonly dropResponseToggle: boolean;
}

export function demoRouter(options: DemoOptions): express.Router {
  const router = express.Router();
  router.get('/demo', async (_req, res) => {
    res.type('html').send(await readFile(path.join(demoFolder, 'index.html'), 'utf8'));
  });
  router.get('/demo/checkout.js', async (_req, res) => {
    const script = await readFile(bundlePath, 'utf8').catch(() => undefined);
    if (script === undefined) {
      res
        .status(404)
        .type('text')
        .send('The demo script is not built: run `npm run build` (or `npm run build:demo`).\n');
      return;
    }
    res.type('js').send(script);
  });
  router.get('/demo/config.json', (_req, res) => {
    res.json({ apiKey: options.apiKey ?? '', dropResponseToggle: options.dropResponseToggle });
  });
  return router;
}

/** Fault hook for the demo toggle: lose a first attempt's answer after the server produced it. */
export function dropResponseFault(req: Request, res: Response, next: NextFunction): void {
  if (req.headers['x-demo-drop-response'] === '1' && (req.headers['idempotency-attempt'] ?? '1') === '1') {
    const cut = () => {
      req.socket.destroy();
      return true;
    };
    res.write = cut as unknown as typeof res.write;
    res.end = cut as unknown as typeof res.end;
  }
  next();
}
