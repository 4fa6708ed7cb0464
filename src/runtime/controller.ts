/**
 * Runs a reconcile function (the contract in reconcile.ts) over the keys of a work queue with a
 * fixed number of workers. Keys are typed; the queue holds their encoded form.
 *
 * Error policy (the one place that decides retries): a conflict (stale cache) is retried almost at
 * once, a few times, before it backs off like everything else; any other error backs off
 * exponentially per key; success resets the key's backoff. One failing key never blocks others.
 */
import { classify } from './errors.ts';
import type { Logger } from './logger.ts';
import type { WorkQueue } from './queue.ts';
import type { Enqueue, KeyCodec, Outcome, Reconcile } from './reconcile.ts';

export type ReconcileObserver = (
  key: string,
  result: 'success' | 'error' | 'requeue',
  seconds: number,
) => void;

const QUICK_CONFLICT_RETRIES = 3;
const CONFLICT_RETRY_MS = 20;

export interface ControllerOptions<K> {
  queue: WorkQueue;
  codec: KeyCodec<K>;
  reconcile: Reconcile<K>;
  logger: Logger;
  workers: number;
}

export class Controller<K> {
  private readonly queue: WorkQueue;
  private readonly codec: KeyCodec<K>;
  private readonly reconcile: Reconcile<K>;
  private readonly logger: Logger;
  private readonly workers: number;
  private readonly conflicts = new Map<string, number>();
  private readonly observers: ReconcileObserver[] = [];
  private running: Promise<void>[] = [];
  private sequence = 0;

  constructor(options: ControllerOptions<K>) {
    this.queue = options.queue;
    this.codec = options.codec;
    this.reconcile = options.reconcile;
    this.logger = options.logger;
    this.workers = options.workers;
  }

  /** Puts keys on the queue as an Outcome (or an event mapping) asks. */
  enqueue(requests: readonly Enqueue<K>[]): void {
    for (const { key, afterMs, unlessBackingOff } of requests) {
      const text = this.codec.encode(key);
      if (afterMs !== undefined) this.queue.addAfter(text, afterMs);
      else if (unlessBackingOff) this.queue.addUnlessBackingOff(text);
      else this.queue.add(text);
    }
  }

  onReconcile(observer: ReconcileObserver): void {
    this.observers.push(observer);
  }

  start(): void {
    for (let i = 0; i < this.workers; i++) this.running.push(this.work());
  }

  /** Resolves when every worker has finished its current key after the queue was shut down. */
  async stopped(): Promise<void> {
    await Promise.all(this.running);
    this.running = [];
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      await this.runOne(key);
    }
  }

  private async runOne(key: string): Promise<void> {
    const reconcileId = (++this.sequence).toString(36);
    const started = performance.now();
    let outcome: 'success' | 'error' | 'requeue' = 'success';
    try {
      const result: Outcome<K> | undefined = await this.reconcile(this.codec.decode(key), { reconcileId });
      if (result?.enqueue) this.enqueue(result.enqueue);
      if (result?.error !== undefined) throw result.error;
      this.queue.forget(key);
      this.conflicts.delete(key);
      if (result?.requeueAfterMs !== undefined) {
        outcome = 'requeue';
        this.queue.addAfter(key, result.requeueAfterMs);
      }
    } catch (err) {
      outcome = 'error';
      const c = classify(err);
      const conflicts = (this.conflicts.get(key) ?? 0) + 1;
      if (c.kind === 'conflict' && conflicts <= QUICK_CONFLICT_RETRIES) {
        this.conflicts.set(key, conflicts);
        this.queue.addAfter(key, CONFLICT_RETRY_MS * conflicts);
        this.logger.debug('conflict; retrying from the cache', { key, reconcileId, reason: c.reason });
      } else {
        this.conflicts.delete(key);
        const retryInMs = this.queue.addRateLimited(key);
        const level = c.kind === 'forbidden' || c.kind === 'unauthorized' ? 'error' : 'warn';
        this.logger.log(level, 'reconcile failed; retrying', {
          key,
          reconcileId,
          kind: c.kind,
          code: c.code,
          reason: c.reason,
          error: c.message,
          retryInMs,
        });
      }
    } finally {
      this.queue.done(key);
      const seconds = (performance.now() - started) / 1000;
      for (const o of this.observers) o(key, outcome, seconds);
    }
  }
}
