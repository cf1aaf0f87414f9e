/**
 * Structured logs (pino). Credentials and card sources never reach a log line.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export const redactedPaths = [
  'req.headers.authorization',
  'req.headers["x-admin-token"]',
  'headers.authorization',
  'authorization',
  'apiKey',
  '*.apiKey',
  'source',
  '*.source',
  'input.source',
  '*.input.source',
  'variables.input.source',
  '*.variables.input.source',
];

export function createLogger(level: string, name = 'payments-gateway'): Logger {
  return pino({
    name,
    level,
    redact: { paths: redactedPaths, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
