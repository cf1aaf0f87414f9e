/**
 * The checkout demo at /demo, for frontend developers (outside production only): a static page,
 * its script bundled once with esbuild at first request, and its settings (the demo merchant's
 * key, and whether the lose-the-response toggle works). The toggle works only when fault
 * injection (`FAULTS=drop_response`) is on: the api then cuts the connection of a first attempt
 * that carries `X-Demo-Drop-Response: 1`, after its answer is ready (the charge committed).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import express, { type NextFunction, type Request, type Response } from 'express';

const demoFolder = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'demo');

export interface DemoOptions {
  readonly apiKey: string | undefined;
  readonly dropResponseToggle: boolean;
}

let bundle: Promise<string> | undefined;

function bundleScript(): Promise<string> {
  bundle ??= build({
    entryPoints: [path.join(demoFolder, 'checkout.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
  }).then((result) => result.outputFiles[0]?.text ?? '');
  return bundle;
}

export function demoRouter(options: DemoOptions): express.Router {
  const router = express.Router();
  router.get('/demo', async (_req, res) => {
    res.type('html').send(await readFile(path.join(demoFolder, 'index.html'), 'utf8'));
  });
  router.get('/demo/checkout.js', async (_req, res, next) => {
    try {
      res.type('js').send(await bundleScript());
    } catch (error) {
      next(error);
    }
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
