/**
 * The manager: what every controller needs and no reconciler should see. It owns the caches (one
 * self-healing reflector per watch), the work queue and its workers, the safety-net resync, the
 * check that the API the controller serves is installed, graceful stop and instrumentation.
 * The domain registers watches (a cache and a pure mapping from its events to keys) and one
 * reconcile function; it never touches the queue.
 *
 * Guarantees:
 * - Workers start only after every cache has synced, and only when `startWorkers` is called (a
 *   follower under leader election keeps its caches warm without writing).
 * - Event handlers only enqueue the keys their mapping returns; a mapping that throws is logged,
 *   never allowed to end the process.
 * - `stop` stops taking work, gives in-flight reconciles up to `graceMs`, then stops the caches.
 *
 * Errors: `start`/`startCaches` reject with the `requiredApi.missing` error when that API is not
 * served within REQUIRED_API_WAIT_MS, and with the API's error otherwise.
 */
import { type Observable, Subject, takeUntil } from 'rxjs';
import { Controller } from './controller.ts';
import { classify } from './errors.ts';
import type { KubeClient } from './kube.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { WorkQueue } from './queue.ts';
import type { Enqueue, KeyCodec, Reconcile } from './reconcile.ts';
import { Reflector, type StoreEvent } from './reflector.ts';
import { sleep } from './sleep.ts';
import type { Meta, Store } from './store.ts';

/** How long start waits for the required API before giving up with its `missing` error. */
export const REQUIRED_API_WAIT_MS = 15_000;
const REQUIRED_API_POLL_MS = 500;

export interface ManagerOptions<K> {
  client: KubeClient;
  logger: Logger;
  /** The controller's name: the `controller` and `name` labels of its metrics. */
  name: string;
  codec: KeyCodec<K>;
  reconcile: Reconcile<K>;
  /** Workers. */
  concurrency: number;
  /** Every this often (0: never), `resyncKeys` are enqueued again: a safety net for missed events. */
  resyncPeriodMs: number;
  /** The keys to run when workers start and at every resync. */
  resyncKeys: () => K[];
  /** An API that must be served before anything starts (say, a CRD), and the error when it is not. */
  requiredApi?: { path: string; missing: (server: string) => Error };
  metrics?: Metrics;
}

export interface Watch<T extends Meta, K> {
  name: string;
  path: string;
  store: Store<T>;
  /** Projects a raw API object to what the cache keeps. */
  transform: (raw: unknown) => T;
  labelSelector?: string;
  /** The keys that care about an event: pure, and only keys. */
  keys: (event: StoreEvent<T>) => Enqueue<K>[];
}

export class Manager<K> {
  readonly queue: WorkQueue;
  readonly reflectors: Reflector<never>[] = [];
  readonly controller: Controller<K>;
  private readonly options: ManagerOptions<K>;
  private readonly stop$ = new Subject<void>();
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  private synced = false;

  constructor(options: ManagerOptions<K>) {
    this.options = options;
    const { metrics, name } = options;
    this.queue = new WorkQueue({
      onDequeue: metrics ? (_key, ms) => metrics.queueLatency.observe({ name }, ms / 1000) : undefined,
    });
    this.controller = new Controller({
      queue: this.queue,
      codec: options.codec,
      reconcile: options.reconcile,
      logger: options.logger,
      workers: options.concurrency,
    });
    if (metrics) this.instrument(metrics);
  }

  /** Adds a cache and the mapping of its events to keys. Call before `start`. */
  watch<T extends Meta>(watch: Watch<T, K>): Reflector<T> {
    const { client, logger, metrics } = this.options;
    const reflector = new Reflector<T>({
      name: watch.name,
      client,
      path: watch.path,
      store: watch.store,
      transform: watch.transform,
      logger,
      labelSelector: watch.labelSelector,
      onRestart: metrics ? () => metrics.informerRestarts.inc({ informer: watch.name }) : undefined,
    });
    // Every series exists from the start (at 0), so alerts can tell "none" from "not scraped".
    metrics?.informerRestarts.inc({ informer: watch.name }, 0);
    this.reflectors.push(reflector as unknown as Reflector<never>);
    this.handle(reflector.events$, (event) => this.controller.enqueue(watch.keys(event)));
    return reflector;
  }

  /** Checks the required API, starts the caches and, once they have synced, the workers. */
  async start(): Promise<void> {
    await this.startCaches();
    this.startWorkers();
  }

  /** Checks the required API and fills the caches; resolves once they have synced. */
  async startCaches(): Promise<void> {
    await this.checkRequiredApi();
    for (const r of this.reflectors) this.loops.push(r.run(this.abort.signal));
    await Promise.all(this.reflectors.map((r) => r.synced));
    this.synced = true;
  }

  /** Whether every cache has synced (readiness: a follower that is not writing is ready too). */
  get cachesSynced(): boolean {
    return this.synced;
  }

  /** Starts writing: the workers, and the resync. Only the leader calls this. */
  startWorkers(): void {
    const resync = () => this.controller.enqueue(this.options.resyncKeys().map((key) => ({ key })));
    resync();
    this.controller.start();
    if (this.options.resyncPeriodMs > 0) {
      this.resyncTimer = setInterval(resync, this.options.resyncPeriodMs);
      this.resyncTimer.unref();
    }
  }

  /**
   * Stops taking work, lets in-flight reconciles finish for up to `graceMs` (then abandons them:
   * reconciles must be idempotent, so the successor simply redoes them), and stops the caches.
   * Resolves true when nothing was abandoned.
   */
  async stop(graceMs = 20_000): Promise<boolean> {
    clearInterval(this.resyncTimer);
    this.queue.shutDown();
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      this.controller.stopped().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (!finished) this.options.logger.warn('abandoned in-flight reconciles at shutdown', { graceMs });
    this.stop$.next();
    this.abort.abort();
    await Promise.all(this.loops);
    return finished;
  }

  /** Subscribes an event handler until stop; a handler that throws is logged, not rethrown. */
  private handle<T>(events$: Observable<T>, handler: (event: T) => void): void {
    events$.pipe(takeUntil(this.stop$)).subscribe((event) => {
      try {
        handler(event);
      } catch (err) {
        this.options.logger.error('event handler failed', {
          error: err instanceof Error ? err.message : String(err),
        });
      }
    });
  }

  private instrument(metrics: Metrics): void {
    const { name } = this.options;
    for (const result of ['success', 'error', 'requeue'] as const)
      metrics.reconcileTotal.inc({ controller: name, result }, 0);
    this.controller.onReconcile((_key, result, seconds) => {
      metrics.reconcileTotal.inc({ controller: name, result });
      metrics.reconcileTime.observe({ controller: name, result }, seconds);
      if (result === 'error') metrics.queueRetries.inc({ name });
    });
    this.options.client.onRequest((method, _path, code, seconds) => {
      metrics.requests.inc({ method, code: String(code) });
      if (method !== 'WATCH') metrics.requestLatency.observe({ verb: method }, seconds);
    });
    metrics.sample.queueNames = () => [name];
    metrics.sample.queueDepth = () => this.queue.length;
  }

  /**
   * Waits up to REQUIRED_API_WAIT_MS for the required API: an install that applies a CRD and the
   * Deployment together starts the Pod before the new CRD is served (a recreated CRD can take
   * seconds), and the Pod should not crash and restart for that.
   */
  private async checkRequiredApi(): Promise<void> {
    const required = this.options.requiredApi;
    if (!required) return;
    const deadline = performance.now() + REQUIRED_API_WAIT_MS;
    for (let waiting = false; ; waiting = true) {
      try {
        await this.options.client.get(required.path, { limit: 1 });
        if (waiting) this.options.logger.info('the required API is served now', { path: required.path });
        return;
      } catch (err) {
        if (classify(err).kind !== 'notFound') throw err;
        if (performance.now() >= deadline) throw required.missing(this.options.client.server);
        if (!waiting)
          this.options.logger.info('waiting for the required API to be served', {
            path: required.path,
            waitMs: REQUIRED_API_WAIT_MS,
          });
        await sleep(REQUIRED_API_POLL_MS, this.abort.signal);
        if (this.abort.signal.aborted) throw required.missing(this.options.client.server);
      }
    }
  }
}
