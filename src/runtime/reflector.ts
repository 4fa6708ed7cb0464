/**
 * List + watch of one kind of object into a `Store`, that recovers by itself.
 *
 * Guarantees:
 * - `synced` resolves after the first complete list; events for everything listed are emitted first.
 * - After that, the store follows the watch. A watch that ends is resumed from the last seen
 *   resourceVersion (bookmarks keep it current, so resuming rarely needs a relist); a 410 Gone
 *   relists and emits the differences as events, so nothing is lost.
 * - Any other error (network, 5xx, 403 while RBAC is being fixed) is retried with exponential
 *   backoff and counted in `restarts`; the backoff starts over after a successful list or a watch
 *   that brought an event or a bookmark, so each fault is retried from the shortest delay. The
 *   reflector never stops on its own (client-node's informer does, #364 #596 #958). A watch that
 *   brings no byte for `SILENCE_LIMIT_SECONDS` (kube-apiserver sends a bookmark on every watch
 *   each minute) is aborted and resumed: a connection that went silent without closing is noticed
 *   within that, not only at the watch's own timeout (the watchdog).
 * - Handlers of `events$` run synchronously and must not throw (rxjs would rethrow asynchronously
 *   and end the process): the operator wraps every handler.
 * - A watched version that the store already holds through a write-through, or an older one,
 *   emits nothing and changes nothing (see `Store.observe`).
 *
 * Caveats: objects are projected by `transform` before they are stored, so fields it drops are not
 * in the cache. Only objects matching the label selector are seen: one that loses the label is
 * reported as deleted.
 */
import { Subject } from 'rxjs';
import { type BackoffPolicy, backoffDelay, DEFAULT_BACKOFF } from './backoff.ts';
import { classify } from './errors.ts';
import type { KubeClient } from './kube.ts';
import type { Logger } from './logger.ts';
import { sleep } from './sleep.ts';
import { keyOf, type Meta, type Store } from './store.ts';

export type StoreEvent<T> =
  | { type: 'added'; object: T }
  | { type: 'updated'; object: T; old: T }
  | { type: 'deleted'; object: T };

export interface ReflectorOptions<T extends Meta> {
  /** For logs and metrics, e.g. `serviceaccounts`. */
  name: string;
  client: KubeClient;
  /** The list path, e.g. `/api/v1/serviceaccounts` or `/api/v1/namespaces/x/secrets`. */
  path: string;
  labelSelector?: string;
  store: Store<T>;
  transform: (raw: unknown) => T;
  logger: Logger;
  backoff?: BackoffPolicy;
  /** Called each time the list/watch loop failed and restarts after a backoff. */
  onRestart?: () => void;
  /** Server-side watch timeout range, seconds; a random value is taken per watch (as client-go does). */
  watchTimeoutSeconds?: [number, number];
}

/**
 * kube-apiserver sends a bookmark on every watch that asks for them once a minute (measured here:
 * at 60 s and 120 s on a quiet watch), so a watch silent for this long is dead, whatever its
 * server-side timeout. The margin covers a loaded API server.
 */
export const SILENCE_LIMIT_SECONDS = 90;

/** How long a watch with this server-side timeout may stay silent before it is given up; pure. */
export function silenceLimitMs(timeoutSeconds: number): number {
  return Math.min(timeoutSeconds + 30, SILENCE_LIMIT_SECONDS) * 1000;
}

interface ListResponse {
  metadata: { resourceVersion: string };
  items: unknown[];
}

export class Reflector<T extends Meta> {
  readonly name: string;
  readonly store: Store<T>;
  readonly events$ = new Subject<StoreEvent<T>>();
  readonly synced: Promise<void>;
  /** Times the list/watch loop failed and was restarted after a backoff. */
  restarts = 0;
  private markSynced!: () => void;
  private readonly options: ReflectorOptions<T>;
  private resourceVersion = '';
  /** Whether the current watch has brought an event or a bookmark. */
  private heard = false;

  constructor(options: ReflectorOptions<T>) {
    this.options = options;
    this.name = options.name;
    this.store = options.store;
    this.synced = new Promise((resolve) => {
      this.markSynced = resolve;
    });
  }

  /** Runs until `signal` aborts. Never rejects. */
  async run(signal: AbortSignal): Promise<void> {
    const { logger, backoff = DEFAULT_BACKOFF } = this.options;
    let failures = 0;
    let needList = true;
    while (!signal.aborted) {
      this.heard = false;
      try {
        if (needList) {
          await this.list(signal);
          needList = false;
          failures = 0;
        }
        const gone = await this.watch(signal);
        if (gone) {
          needList = true;
          logger.debug('watch expired, relisting', { reflector: this.name });
        }
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        const c = classify(err);
        if (c.kind === 'gone') {
          needList = true;
          continue;
        }
        // A watch that brought something was healthy: its end starts a new run of failures, so
        // faults hours apart (or seconds apart, each recovered from) never add up to the cap.
        failures = this.heard ? 1 : failures + 1;
        this.restarts++;
        this.options.onRestart?.();
        const delay = backoffDelay(failures, backoff);
        logger.warn('list/watch failed; retrying', {
          reflector: this.name,
          code: c.code,
          reason: c.reason,
          error: c.message,
          retryInMs: delay,
        });
        await sleep(delay, signal);
      }
    }
  }

  private async list(signal: AbortSignal): Promise<void> {
    const { client, path, labelSelector, transform } = this.options;
    // resourceVersion=0 lets the API server answer from its watch cache; a relist asks for data
    // not older than what this reflector has already seen.
    const query = this.resourceVersion
      ? { labelSelector, resourceVersion: this.resourceVersion, resourceVersionMatch: 'NotOlderThan' }
      : { labelSelector, resourceVersion: '0' };
    const list = await client.get<ListResponse>(path, query, signal).catch((err) => {
      if (this.resourceVersion && classify(err).kind === 'gone')
        return client.get<ListResponse>(path, { labelSelector }, signal);
      throw err;
    });
    // The list is the truth now; written-through versions it may predate are forgotten.
    this.store.forgetWrites();
    const seen = new Set<string>();
    const events: StoreEvent<T>[] = [];
    for (const raw of list.items) {
      const obj = transform(raw);
      const key = keyOf(obj);
      seen.add(key);
      const old = this.store.put(obj);
      if (!old) events.push({ type: 'added', object: obj });
      else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion)
        events.push({ type: 'updated', object: obj, old });
    }
    for (const key of [...this.store.keys()]) {
      if (!seen.has(key)) {
        const old = this.store.remove(key);
        if (old) events.push({ type: 'deleted', object: old });
      }
    }
    this.resourceVersion = list.metadata.resourceVersion;
    this.markSynced();
    for (const e of events) this.emit(e);
  }

  /** One watch call; resolves true when the resourceVersion expired (410) and a relist is needed. */
  private async watch(signal: AbortSignal): Promise<boolean> {
    const { client, path, labelSelector, transform, watchTimeoutSeconds = [300, 600] } = this.options;
    const [lo, hi] = watchTimeoutSeconds;
    const timeoutSeconds = Math.round(lo + Math.random() * (hi - lo));
    let gone = false;
    let failure: Error | undefined;
    const local = new AbortController();
    const onAbort = () => local.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await client.watch(
        path,
        { labelSelector, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
        (type, raw) => {
          if (type !== 'ERROR') this.heard = true;
          if (type === 'ERROR') {
            const status = raw as { code?: number; message?: string };
            if (status.code === 410) gone = true;
            else failure = new Error(`watch error event: ${status.code} ${status.message ?? ''}`);
            local.abort();
            return;
          }
          const rv = (raw as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
          if (type === 'BOOKMARK') {
            if (rv) this.resourceVersion = rv;
            return;
          }
          const obj = transform(raw);
          if (type === 'DELETED') {
            const old = this.store.remove(keyOf(obj));
            this.emit({ type: 'deleted', object: old ?? obj });
          } else {
            // Undefined for the echo of a write-through, or a version older than one written through.
            const change = this.store.observe(obj);
            if (change)
              this.emit(
                change.old
                  ? { type: 'updated', object: obj, old: change.old }
                  : { type: 'added', object: obj },
              );
          }
          if (rv) this.resourceVersion = rv;
        },
        { signal: local.signal, inactivityTimeoutMs: silenceLimitMs(timeoutSeconds) },
      );
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    // Any other error event is a failure like a broken stream: back off before watching again.
    if (failure && !signal.aborted) throw failure;
    return gone;
  }

  private emit(event: StoreEvent<T>): void {
    this.events$.next(event);
  }
}
