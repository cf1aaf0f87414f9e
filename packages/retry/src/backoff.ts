/**
 * Full-jitter exponential backoff: delay = random(0, min(cap, base × 2^attempt)).
 * Pure: no I/O, no imports; shared by the client SDK and the workers.
 */

export interface BackoffOptions {
  readonly baseMs: number;
  readonly capMs: number;
}

/** `attempt` counts retries from 0 (the first retry). `random` is in [0, 1). */
export function fullJitterDelayMs(
  attempt: number,
  options: BackoffOptions,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}

/**
 * The wait before a retry: the jittered delay, or, when the server sent Retry-After, that long
 * plus the jittered delay, so clients told the same Retry-After do not come back in step.
 */
export function retryDelayMs(
  attempt: number,
  options: BackoffOptions,
  retryAfterSeconds: number | undefined,
  random: () => number = Math.random,
): number {
  const jittered = fullJitterDelayMs(attempt, options, random);
  return retryAfterSeconds === undefined ? jittered : retryAfterSeconds * 1000 + jittered;
}
