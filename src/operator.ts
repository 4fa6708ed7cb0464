/**
 * Wiring: the runtime's manager, regcred's watches (regcred/watches.ts) and its reconcilers
 * (regcred/reconcilers.ts), with the pieces they share: the caches, the write limiter, the Event
 * recorder and the sources. No decision is made here.
 */
import { Gauge } from 'prom-client';
import { API_VERSION, PLURAL, type RegistryCredential } from './api/v1alpha1.ts';
import { type Caches, Executor } from './regcred/executor.ts';
import { credentialKey, type Key, keyCodec } from './regcred/keys.ts';
import type { Secret } from './regcred/objects.ts';
import { Reconcilers } from './regcred/reconcilers.ts';
import { Sources } from './regcred/sources.ts';
import { createCaches, watches } from './regcred/watches.ts';
import { EventRecorder } from './runtime/events.ts';
import type { KubeClient } from './runtime/kube.ts';
import { Limiter } from './runtime/limiter.ts';
import type { Logger } from './runtime/logger.ts';
import { Manager } from './runtime/manager.ts';
import type { Metrics } from './runtime/metrics.ts';
import type { WorkQueue } from './runtime/queue.ts';
import type { Reflector } from './runtime/reflector.ts';
import { Store } from './runtime/store.ts';

export interface OperatorOptions {
  client: KubeClient;
  logger: Logger;
  sourceNamespaces: string[];
  /** Parallel writes, and workers. */
  concurrency: number;
  /** Safety-net requeue of every RegistryCredential; 0 disables it. */
  resyncPeriodMs: number;
  /** How long writes may keep failing before a RegistryCredential is Stalled; default 2 min. */
  stallAfterMs?: number;
  /** Where to count reconciles, queue and API requests; none when omitted. */
  metrics?: Metrics;
}

/** The controller's name, in metrics (`controller`, `name` labels). */
const CONTROLLER = 'registrycredential';

/** The conditions `regcred_credential_condition` exports, and the status an absent one counts as. */
const CONDITION_METRICS = [
  ['Ready', 'Unknown'],
  ['Stalled', 'False'],
] as const;

/** What the missing-CRD error tells the user to run (from the repository root); a test runs it. */
export const INSTALL_CRD_HINT = 'kubectl apply -f crds/';

export class CrdMissingError extends Error {
  override name = 'CrdMissingError';
}

export class Operator {
  readonly caches: Caches;
  readonly limiter: Limiter;
  readonly events: EventRecorder;
  readonly reconcilers: Reconcilers;
  private readonly manager: Manager<Key>;
  private readonly options: OperatorOptions;

  constructor(options: OperatorOptions) {
    this.options = options;
    const { client, logger, metrics } = options;
    this.caches = createCaches();
    const sourceStores = new Map(options.sourceNamespaces.map((ns) => [ns, new Store<Secret>()]));
    this.limiter = new Limiter(options.concurrency);
    const onDropped = metrics ? () => metrics.eventsDropped.inc() : undefined;
    this.events = new EventRecorder(client, logger, { component: 'regcred', onDropped });
    const executor = new Executor({
      client,
      caches: this.caches,
      limiter: this.limiter,
      events: this.events,
    });
    this.reconcilers = new Reconcilers({
      client,
      caches: this.caches,
      sources: new Sources(sourceStores),
      executor,
      events: this.events,
      logger,
      ...(options.stallAfterMs === undefined ? {} : { stallAfterMs: options.stallAfterMs }),
    });
    this.manager = new Manager<Key>({
      client,
      logger,
      metrics,
      name: CONTROLLER,
      codec: keyCodec,
      reconcile: this.reconcilers.reconcile,
      concurrency: options.concurrency,
      resyncPeriodMs: options.resyncPeriodMs,
      resyncKeys: () => [...this.caches.credentials.list()].map((rc) => credentialKey(rc.metadata.name)),
      requiredApi: {
        path: `/apis/${API_VERSION}/${PLURAL}`,
        missing: (server) =>
          new CrdMissingError(
            `the RegistryCredential CRD (${PLURAL}.regcred.dev) is not installed on ${server}; ` +
              `install it first: ${INSTALL_CRD_HINT}`,
          ),
      },
    });
    const view = {
      caches: this.caches,
      selectionOf: (rc: RegistryCredential) => this.reconcilers.book.selectionOf(rc),
    };
    for (const w of watches(view, sourceStores)) this.manager.watch(w);
    if (metrics) {
      const copies = this.caches.copies;
      new Gauge({
        name: 'regcred_managed_copies',
        help: 'Copies regcred manages (its cache of them).',
        registers: [metrics.registry],
        collect() {
          this.set(copies.size);
        },
      });
      const credentials = this.caches.credentials;
      new Gauge({
        name: 'regcred_credential_condition',
        help:
          "A RegistryCredential's Ready and Stalled conditions as its status shows them: 1 for the status " +
          '(True, False or Unknown) the condition has, 0 for the others. No status yet: Ready is Unknown; ' +
          'Stalled absent: False.',
        labelNames: ['credential', 'type', 'status'],
        registers: [metrics.registry],
        collect() {
          this.reset();
          for (const rc of credentials.list()) {
            for (const [type, absent] of CONDITION_METRICS) {
              const now = rc.status?.conditions?.find((c) => c.type === type)?.status ?? absent;
              for (const status of ['True', 'False', 'Unknown'] as const)
                this.set({ credential: rc.metadata.name, type, status }, now === status ? 1 : 0);
            }
          }
        },
      });
    }
  }

  get queue(): WorkQueue {
    return this.manager.queue;
  }

  get reflectors(): Reflector<never>[] {
    return this.manager.reflectors;
  }

  /** Checks the CRD is installed, starts the caches and, once they have synced, the workers. */
  async start(): Promise<void> {
    await this.startCaches();
    this.startWorkers();
  }

  /** Checks the CRD is installed and fills the caches; resolves once they have synced. */
  async startCaches(): Promise<void> {
    await this.manager.startCaches();
    this.logSynced();
  }

  /** Whether every cache has synced (readiness: a follower that is not writing is ready too). */
  get cachesSynced(): boolean {
    return this.manager.cachesSynced;
  }

  /** Starts writing: the workers, and the safety-net resync. Only the leader calls this. */
  startWorkers(): void {
    this.manager.startWorkers();
  }

  /** Stops taking work, gives in-flight reconciles up to `graceMs`, and stops the caches. */
  stop(graceMs = 20_000): Promise<boolean> {
    return this.manager.stop(graceMs);
  }

  private logSynced(): void {
    this.options.logger.info('caches synced', {
      credentials: this.caches.credentials.size,
      namespaces: this.caches.namespaces.size,
      serviceAccounts: this.caches.serviceAccounts.size,
      copies: this.caches.copies.size,
    });
  }
}
