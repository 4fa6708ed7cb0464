/**
 * The one place that decides how long to wait before a retry: exponential from `baseMs`, capped at
 * `maxMs`, with "full jitter" on the upper half so that many keys failing together (an API server
 * restart) do not retry in lockstep.
 */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 100, maxMs: 60_000 };

/** The delay before retry number `failures` (1 = first retry). `random` is injectable for tests. */
export function backoffDelay(
  failures: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random = Math.random,
): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}
