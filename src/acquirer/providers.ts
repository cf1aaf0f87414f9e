/**
 * The acquirer providers the gateway can be configured with (ACQUIRER), in the manner of Medusa's
 * payment providers: each name maps to a factory, and the gateway builds the one configured. A real
 * card network registers here next to the simulated one; nothing else changes.
 *
 * The simulated acquirer approves test cards (tok_visa) without moving any money. Production
 * must name it explicitly (ACQUIRER=simulated with ACQUIRER_SIMULATED_IN_PRODUCTION=true, checked in
 * config.ts), and every start in production with it logs a warning.
 */
import type { AcquirerName, Config } from '../config';
import type { Logger } from '../platform/logger';
import type { Acquirer } from './acquirer';
import { SimulatedAcquirer } from './simulated-acquirer';

/** tok_slow's delay: long enough for a test to send a concurrent request, short of the timeout. */
const simulatedSlowMs = 800;

type AcquirerFactory = (config: Config) => Acquirer;

const providers: Readonly<Record<AcquirerName, AcquirerFactory>> = {
  simulated: (config) =>
    new SimulatedAcquirer({
      databaseUrl: config.databaseUrl,
      timeoutMs: config.acquirerTimeoutMs,
      slowMs: Math.min(simulatedSlowMs, Math.floor(config.acquirerTimeoutMs / 2)),
    }),
};

/** Builds the configured acquirer. Outside production an unset ACQUIRER means the simulated one. */
export function createAcquirer(config: Config, logger: Logger): Acquirer {
  // config.ts refuses a production start without ACQUIRER, so only local use reaches the fallback.
  const name: AcquirerName = config.acquirer ?? 'simulated';
  if (config.isProduction && name === 'simulated') {
    logger.warn(
      { acquirer: name },
      'the SIMULATED acquirer is configured in production (ACQUIRER_SIMULATED_IN_PRODUCTION=true): ' +
        'test cards are approved and no money moves',
    );
  }
  return providers[name](config);
}
