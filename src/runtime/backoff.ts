/**
 * The one place that decides how long to wait before a retry: exponential from `baseMs`, capped at
 * `maxMs`, with "full jitter" on the upper half so that many keys failing together (an API server
 * restart) do not retry in lockstep.
 */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

/**
 * Capped at 30 s (client-go's reflector caps at 30 s too): after an outage of any length, every
 * watch and every failed key is retried within 30 s of the API server coming back, well inside
 * the 60 s recovery the fault scenarios allow (test/integration/faults.test.ts).
 */
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 100, maxMs: 30_000 };

/** The delay before retry number `failures` (1 = first retry). `random` is injectable for tests. */
export function backoffDelay(
  failures: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random = Math.random,
): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}
