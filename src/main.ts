/**
 * The composition root: reads the config, starts the roles asked for (ROLE), and stops them
 * gracefully on SIGTERM or SIGINT. A bad configuration value stops the process, naming the variable.
 */
import 'reflect-metadata';
import { ConfigError, loadConfig, type Config } from './config';
import { startGateway } from './gateway';
import { createLogger } from './platform/logger';
import { assertServicesReachable, UnreachableServiceError } from './platform/reachability';
import { ensureDemoMerchant } from './merchants/merchants';
import { DeploymentIdentityError } from './platform/deployment-namespace';

/** How long a production start waits for Postgres or Redis before it gives up, naming the variable. */
const reachabilityTimeoutMs = 5_000;

export async function run(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel, `payments-gateway-${config.role}`);
  // In production nothing starts services for us: stop at once rather than serve 503s.
  if (config.isProduction) await assertServicesReachable(config, reachabilityTimeoutMs);
  const gateway = await startGateway(config, logger);
  if (
    !config.isProduction &&
    config.demoMerchantApiKey !== undefined &&
    (config.role === 'api' || config.role === 'all')
  ) {
    // A scripted local setup (docker compose, CI) knows this key in advance.
    await ensureDemoMerchant(gateway.database.prisma, config.demoMerchantApiKey);
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    // A second signal (an impatient supervisor, a double Ctrl-C) must not kill the process
    // mid-drain: with `once`, Node's default handler would take it and stop at once, leaving
    // jobs stalled. The drain has its own deadline (below), so ignoring it costs nothing.
    if (stopping) {
      logger.warn({ signal }, 'already shutting down; the drain ends by its deadline');
      return;
    }
    stopping = true;
    logger.info({ signal }, 'shutting down: no new requests, finishing in-flight ones');
    // The backstop: every step has its own deadline, but the process must end even if the
    // lifecycle itself were stuck. unref: it never keeps an otherwise finished process alive.
    setTimeout(() => {
      logger.error({ deadlineMs: shutdownDeadlineMs(config) }, 'shutdown deadline passed; exiting');
      process.exit(1);
    }, shutdownDeadlineMs(config)).unref();
    // A component that failed to stop (logged by the lifecycle) makes the exit code say so.
    gateway.stop().then(
      (report) => process.exit(report.failed.length === 0 ? 0 : 1),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

/**
 * The whole drain's outer bound: the HTTP drain and the worker's grace (SHUTDOWN_GRACE_MS each,
 * run one after the other) plus the short steps after them.
 */
function shutdownDeadlineMs(config: Config): number {
  return 2 * config.shutdownGraceMs + 15_000;
}

export function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`Configuration error: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}

const isEntryPoint = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isEntryPoint) {
  run(loadConfigOrExit()).catch((error: unknown) => {
    if (error instanceof UnreachableServiceError || error instanceof DeploymentIdentityError) {
      process.stderr.write(`Cannot start: ${error.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`The gateway could not start: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
