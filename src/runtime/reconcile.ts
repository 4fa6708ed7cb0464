/**
 * The reconcile contract, as in kube-rs and controller-runtime.
 *
 * A reconciler is given a key, never the event that caused it: it reads the world from caches,
 * converges it, and says what should happen next. It must be idempotent (it may run any number of
 * times for the same world) and must not enqueue anything itself: follow-up work is returned.
 *
 * Outcome:
 * - nothing: done until something changes;
 * - `requeueAfterMs`: look at this key again after that long;
 * - `error`: it failed; the runtime's error policy retries the key with backoff (see controller.ts).
 *   A thrown error counts the same;
 * - `enqueue`: other keys to run (with or without `error`): now, now unless that key is backing
 *   off after a failure (a nudge that must not cut its backoff short), or after a delay (several
 *   such requests coalesce into one run).
 */
export interface Enqueue<K> {
  key: K;
  afterMs?: number;
  unlessBackingOff?: boolean;
}

export interface Outcome<K> {
  requeueAfterMs?: number;
  error?: unknown;
  enqueue?: Enqueue<K>[];
}

export type Reconcile<K> = (key: K, context: { reconcileId: string }) => Promise<Outcome<K> | undefined>;

export interface KeyCodec<K> {
  encode(key: K): string;
  decode(text: string): K;
}
