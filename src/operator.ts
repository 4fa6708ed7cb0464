/**
 * Wires the runtime to the domain: one reflector per kind of object regcred reads, the mapping
 * from their events to the keys of the RegistryCredentials that care, the work queue and its
 * workers, and the periodic safety-net requeue.
 *
 * Caches: RegistryCredentials, Namespaces and ServiceAccounts cluster-wide; Secrets only where
 * regcred may look: those labelled as regcred's copies, and every Secret in each allowed source
 * namespace. Never a cluster-wide cache of all Secrets.
 *
 * Event handlers only enqueue keys (the rxjs pipelines below); every decision is made when the key
 * is reconciled, from the caches.
 */
import { type Observable, Subject, takeUntil } from 'rxjs';
import { API_VERSION, PLURAL, type RegistryCredential } from './api/v1alpha1.ts';
import {
  COPY_SELECTOR,
  CREDENTIAL_LABEL,
  type Namespace,
  projectNamespace,
  projectRegistryCredential,
  projectSecret,
  projectServiceAccount,
  type Secret,
  type ServiceAccount,
} from './regcred/objects.ts';
import { addedEntries, secretNameOf, sourceOf } from './regcred/plan.ts';
import {
  type Caches,
  credentialKey,
  namespaceKey,
  Reconciler,
  STATUS_DELAY_MS,
  statusKey,
} from './regcred/reconciler.ts';
import { Sources } from './regcred/sources.ts';
import { Controller } from './runtime/controller.ts';
import { classify } from './runtime/errors.ts';
import { EventRecorder } from './runtime/events.ts';
import type { KubeClient } from './runtime/kube.ts';
import { Limiter } from './runtime/limiter.ts';
import type { Logger } from './runtime/logger.ts';
import { CONTROLLER, type Metrics } from './runtime/metrics.ts';
import { WorkQueue } from './runtime/queue.ts';
import { Reflector, type StoreEvent } from './runtime/reflector.ts';
import { Store } from './runtime/store.ts';

export interface OperatorOptions {
  client: KubeClient;
  logger: Logger;
  sourceNamespaces: string[];
  /** Parallel writes, and workers. */
  concurrency: number;
  /** Safety-net requeue of every RegistryCredential; 0 disables it. */
  resyncPeriodMs: number;
  /** Where to count reconciles, queue and API requests; none when omitted. */
  metrics?: Metrics;
}

/** What the missing-CRD error tells the user to run (from the repository root); a test runs it. */
export const INSTALL_CRD_HINT = 'kubectl apply -f crds/';

export class CrdMissingError extends Error {
  override name = 'CrdMissingError';
}

export class Operator {
  readonly queue: WorkQueue;
  readonly caches: Caches;
  readonly reflectors: Reflector<never>[] = [];
  readonly reconciler: Reconciler;
  readonly controller: Controller;
  readonly events: EventRecorder;
  private readonly options: OperatorOptions;
  private readonly stop$ = new Subject<void>();
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  private synced = false;

  constructor(options: OperatorOptions) {
    this.options = options;
    const { client, logger, metrics } = options;
    this.queue = new WorkQueue({
      onDequeue: metrics
        ? (_key, ms) => metrics.queueLatency.observe({ name: CONTROLLER }, ms / 1000)
        : undefined,
    });
    this.caches = {
      credentials: new Store<RegistryCredential>({ source: (rc) => [refKey(sourceOf(rc))] }),
      namespaces: new Store<Namespace>(),
      serviceAccounts: new Store<ServiceAccount>({ namespace: (sa) => [sa.metadata.namespace!] }),
      copies: new Store<Secret>({
        namespace: (s) => [s.metadata.namespace!],
        credential: (s) =>
          s.metadata.labels?.[CREDENTIAL_LABEL] ? [s.metadata.labels[CREDENTIAL_LABEL]] : [],
      }),
    };
    const sourceStores = new Map(options.sourceNamespaces.map((ns) => [ns, new Store<Secret>()]));
    this.events = new EventRecorder(client, logger, { component: 'regcred' });
    this.reconciler = new Reconciler({
      client,
      caches: this.caches,
      sources: new Sources(sourceStores),
      queue: this.queue,
      limiter: new Limiter(options.concurrency),
      events: this.events,
      logger,
    });
    this.controller = new Controller({
      queue: this.queue,
      reconcile: this.reconciler.reconcile,
      logger,
      workers: options.concurrency,
    });
    if (metrics) this.instrument(metrics);

    const reflect = <T extends { metadata: { name: string } }>(
      name: string,
      path: string,
      store: Store<T>,
      transform: (raw: unknown) => T,
      labelSelector?: string,
    ) => {
      const onRestart = metrics ? () => metrics.informerRestarts.inc({ informer: name }) : undefined;
      const r = new Reflector<T>({ name, client, path, store, transform, logger, labelSelector, onRestart });
      this.reflectors.push(r as unknown as Reflector<never>);
      return r;
    };
    const credentials = reflect(
      'registrycredentials',
      `/apis/${API_VERSION}/${PLURAL}`,
      this.caches.credentials,
      projectRegistryCredential,
    );
    const namespaces = reflect('namespaces', '/api/v1/namespaces', this.caches.namespaces, projectNamespace);
    const serviceAccounts = reflect(
      'serviceaccounts',
      '/api/v1/serviceaccounts',
      this.caches.serviceAccounts,
      projectServiceAccount,
    );
    const copies = reflect('copies', '/api/v1/secrets', this.caches.copies, projectSecret, COPY_SELECTOR);
    const sources = [...sourceStores].map(([ns, store]) =>
      reflect(`sources/${ns}`, `/api/v1/namespaces/${ns}/secrets`, store, projectSecret),
    );

    this.handle(credentials.events$, (e) => this.onCredential(e));
    this.handle(namespaces.events$, (e) => this.onNamespace(e.object));
    this.handle(serviceAccounts.events$, (e) => this.onServiceAccount(e));
    this.handle(copies.events$, (e) => this.onCopy(e.object));
    for (const s of sources) this.handle(s.events$, (e) => this.onSource(e.object));
  }

  /**
   * Subscribes an event handler until stop. A handler that throws is logged: rxjs would otherwise
   * rethrow it asynchronously, which would end the process.
   */
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

  /** Checks the CRD is installed, starts the caches and, once they have synced, the workers. */
  async start(): Promise<void> {
    await this.startCaches();
    this.startWorkers();
  }

  /** Checks the CRD is installed and fills the caches; resolves once they have synced. */
  async startCaches(): Promise<void> {
    await this.checkCrd();
    for (const r of this.reflectors) this.loops.push(r.run(this.abort.signal));
    await Promise.all(this.reflectors.map((r) => r.synced));
    this.synced = true;
    this.options.logger.info('caches synced', {
      credentials: this.caches.credentials.size,
      namespaces: this.caches.namespaces.size,
      serviceAccounts: this.caches.serviceAccounts.size,
      copies: this.caches.copies.size,
    });
  }

  /** Whether every cache has synced (readiness: a follower that is not writing is ready too). */
  get cachesSynced(): boolean {
    return this.synced;
  }

  /** Starts writing: the workers, and the safety-net resync. Only the leader calls this. */
  startWorkers(): void {
    for (const rc of this.caches.credentials.list()) this.queue.add(credentialKey(rc.metadata.name));
    this.controller.start();
    if (this.options.resyncPeriodMs > 0) {
      this.resyncTimer = setInterval(() => {
        for (const rc of this.caches.credentials.list()) this.queue.add(credentialKey(rc.metadata.name));
      }, this.options.resyncPeriodMs);
      this.resyncTimer.unref();
    }
  }

  /**
   * Stops taking work, lets in-flight reconciles finish for up to `graceMs` (then abandons them:
   * every write is idempotent and guarded by a precondition, so the successor simply redoes it),
   * and stops the caches. Resolves true when nothing was abandoned.
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

  private instrument(metrics: Metrics): void {
    const labels = { controller: CONTROLLER };
    this.controller.onReconcile((_key, result, seconds) => {
      metrics.reconcileTotal.inc({ ...labels, result });
      metrics.reconcileTime.observe({ ...labels, result }, seconds);
      if (result === 'error') metrics.queueRetries.inc({ name: CONTROLLER });
    });
    this.options.client.onRequest((method, _path, code, seconds) => {
      metrics.requests.inc({ method, code: String(code) });
      if (method !== 'WATCH') metrics.requestLatency.observe({ verb: method }, seconds);
    });
    metrics.sample.queueDepth = () => this.queue.length;
    metrics.sample.managedCopies = () => this.caches.copies.size;
  }

  private async checkCrd(): Promise<void> {
    try {
      await this.options.client.get(`/apis/${API_VERSION}/${PLURAL}`, { limit: 1 });
    } catch (err) {
      if (classify(err).kind === 'notFound') {
        throw new CrdMissingError(
          `the RegistryCredential CRD (${PLURAL}.regcred.dev) is not installed on ${this.options.client.server}; ` +
            `install it first: ${INSTALL_CRD_HINT}`,
        );
      }
      throw err;
    }
  }

  // --- event → key mapping -----------------------------------------------------------------------

  private onCredential(e: StoreEvent<RegistryCredential>): void {
    const rc = e.object;
    const name = rc.metadata.name;
    if (e.type === 'deleted') {
      this.reconciler.forget(name, rc.metadata.uid);
      return;
    }
    if (e.type === 'updated') {
      const a = e.old.metadata;
      const b = rc.metadata;
      const specOrLifecycle =
        a.generation !== b.generation ||
        a.deletionTimestamp !== b.deletionTimestamp ||
        a.uid !== b.uid ||
        (a.finalizers ?? []).join() !== (b.finalizers ?? []).join();
      if (!specOrLifecycle) {
        this.queue.addAfter(statusKey(name), STATUS_DELAY_MS);
        return;
      }
    }
    this.queue.add(credentialKey(name));
  }

  /** Credentials that select the namespace (or see it terminating), or hold a copy there. */
  private onNamespace(ns: Namespace): void {
    const copiesHere = this.caches.copies.byIndex('namespace', ns.metadata.name);
    for (const rc of this.caches.credentials.list()) {
      const name = rc.metadata.name;
      const selection = this.reconciler.selectionOf(rc);
      const concerned =
        (selection.ok && selection.selection.namespace(ns) !== 'notSelected') ||
        copiesHere.some((c) => c.metadata.labels?.[CREDENTIAL_LABEL] === name);
      if (!concerned) continue;
      this.queue.add(namespaceKey(name, ns.metadata.name));
      this.queue.addAfter(statusKey(name), STATUS_DELAY_MS);
    }
  }

  private onServiceAccount(e: StoreEvent<ServiceAccount>): void {
    const namespace = e.object.metadata.namespace!;
    const ns = this.caches.namespaces.get(namespace);
    const involved = new Set([
      ...Object.values(addedEntries(e.object)),
      ...(e.type === 'updated' ? Object.values(addedEntries(e.old)) : []),
    ]);
    for (const rc of this.caches.credentials.list()) {
      const selection = this.reconciler.selectionOf(rc);
      const selects = ns !== undefined && selection.ok && selection.selection.namespace(ns) === 'selected';
      if (selects || involved.has(rc.metadata.name))
        this.queue.add(namespaceKey(rc.metadata.name, namespace));
    }
  }

  private onCopy(secret: Secret): void {
    const namespace = secret.metadata.namespace!;
    const labelled = secret.metadata.labels?.[CREDENTIAL_LABEL];
    for (const rc of this.caches.credentials.list()) {
      if (rc.metadata.name === labelled || secretNameOf(rc) === secret.metadata.name) {
        this.queue.add(namespaceKey(rc.metadata.name, namespace));
      }
    }
  }

  private onSource(secret: Secret): void {
    for (const rc of this.caches.credentials.byIndex(
      'source',
      refKey(secret.metadata as { namespace: string; name: string }),
    )) {
      this.queue.add(credentialKey(rc.metadata.name));
    }
  }
}

function refKey(ref: { namespace?: string; name: string }): string {
  return `${ref.namespace}/${ref.name}`;
}
