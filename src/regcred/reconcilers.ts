/**
 * The three reconcilers, one per kind of key (keys.ts), each the runtime's contract
 * (runtime/reconcile.ts): read the caches, decide with a pure function, let the executor write,
 * and return what should run next. None enqueues anything itself.
 *
 * - credential: the finalizer; the fan-out to every namespace the credential selects or still has
 *   a copy in; on deletion, once nothing is left, the finalizer's removal.
 * - namespace: one namespace, planned by namespace-plan.ts and carried out by executor.ts; its
 *   result is recorded for status.
 * - status: status-reconciler.ts, from the recorded results.
 *
 * Guarantees: never writes an object regcred does not own (the plan's invariants); no API read on
 * the hot path (a GET happens only for a Secret at the copy's name that the label-selected cache
 * cannot show).
 */
import type { RegistryCredential } from '../api/v1alpha1.ts';
import { classify } from '../runtime/errors.ts';
import { finalized } from '../runtime/finalizer.ts';
import type { KubeClient } from '../runtime/kube.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Enqueue, Outcome } from '../runtime/reconcile.ts';
import { Bookkeeping, basisOf } from './bookkeeping.ts';
import type { Caches } from './executor.ts';
import { credentialKey, type Key, namespaceKey, STATUS_DELAY_MS, statusKey } from './keys.ts';
import { type NamespaceWorld, planNamespace, settle } from './namespace-plan.ts';
import { FINALIZER, isTerminating, projectSecret, type Secret } from './objects.ts';
import { ownershipOf, secretNameOf } from './plan.ts';
import { StatusReconciler, type StatusReconcilerOptions } from './status-reconciler.ts';

/** What the status reconciler needs (but the bookkeeping, made here), and a client and logger. */
export interface ReconcilerOptions extends Omit<StatusReconcilerOptions, 'book'> {
  client: KubeClient;
  logger: Logger;
}

type Result = Outcome<Key> | undefined;
const status = (rc: string): Enqueue<Key> => ({ key: statusKey(rc), afterMs: STATUS_DELAY_MS });

export class Reconcilers {
  readonly book: Bookkeeping;
  private readonly options: ReconcilerOptions;
  private readonly caches: Caches;
  private readonly statuses: StatusReconciler;

  constructor(options: ReconcilerOptions) {
    this.options = options;
    this.caches = options.caches;
    this.book = new Bookkeeping();
    this.statuses = new StatusReconciler({ ...options, book: this.book });
  }

  readonly reconcile = (key: Key, { reconcileId }: { reconcileId: string }): Promise<Result> => {
    if (key.kind === 'credential') return this.credential(key.credential, reconcileId);
    if (key.kind === 'status') return this.statuses.reconcile(key.credential);
    return this.namespace(key.credential, key.namespace, reconcileId);
  };

  // --- credential ---------------------------------------------------------------------------------

  private async credential(name: string, reconcileId: string): Promise<Result> {
    const rc = this.caches.credentials.get(name);
    if (!rc) {
      this.book.forget(name);
      return;
    }
    const nudge = (namespaces: Set<string>): Enqueue<Key>[] =>
      [...namespaces].map((ns) => ({ key: namespaceKey(name, ns), unlessBackingOff: true }));
    const done = await finalized<Enqueue<Key>[]>(rc, FINALIZER, {
      patch: (metadata) => this.options.executor.patchCredential(rc, { metadata }),
      // The fan-out: every namespace it selects or still holds a copy in, then its status.
      apply: async () => {
        const targets = namespacesWithCopies(rc, this.caches);
        const compiled = this.book.selectionOf(rc);
        if (compiled.ok) {
          for (const ns of this.caches.namespaces.list())
            if (compiled.selection.namespace(ns) === 'selected') targets.add(ns.metadata.name);
        }
        return [...nudge(targets), status(name)];
      },
      // Done once no copy is left and no namespace reconcile is still running (it may be writing
      // a copy the caches cannot show yet). Nudged, not re-added: a namespace that failed waits out
      // its backoff (no hot loop). Status says Deleting meanwhile.
      cleanup: async () => {
        const leftovers = namespacesWithCopies(rc, this.caches);
        const done = leftovers.size === 0 && this.book.inFlight(rc) === 0;
        return { done, result: done ? [] : [...nudge(leftovers), status(name)] };
      },
    });
    if (done.phase === 'removed') {
      this.options.logger.info('cleaned up; finalizer removed', { credential: name, reconcileId });
      this.book.forget(name);
      return;
    }
    return { enqueue: done.result ?? [] };
  }

  // --- namespace ----------------------------------------------------------------------------------

  private async namespace(rcName: string, nsName: string, reconcileId: string): Promise<Result> {
    // Every path returns `enqueue`, which the finally block may still add to.
    const rc = this.caches.credentials.get(rcName);
    if (!rc) return;
    const found = this.world(rc, nsName);
    let plan = planNamespace(found instanceof Promise ? await found : found);
    if (plan.kind === 'skip') return;
    if (plan.kind === 'gone') return { enqueue: this.record(rc, nsName, undefined) };

    const deleting = Boolean(rc.metadata.deletionTimestamp);
    const basis = basisOf(rc, this.options.sources.stateOf(rc));
    const enqueue: Enqueue<Key>[] = [];
    this.book.begin(rc);
    let succeeded = false;
    try {
      for (let attempt = 0; ; attempt++) {
        const done = await this.options.executor.run(plan, nsName);
        if (done.kind === 'done') {
          if (plan.copy.kind === 'stop') this.book.remember(rc, nsName, plan.copy.remember);
          else if (plan.copy.kind === 'patch') this.book.remember(rc, nsName, undefined);
          if (plan.copy.kind === 'patch' && plan.copy.change === 'rotation') this.book.markRotated(rc);
          // winston builds and streams a record even for a level it drops: check first on this hot path.
          if (plan.copy.kind === 'patch' && this.options.logger.isDebugEnabled())
            this.options.logger.debug('copy updated', { credential: rcName, namespace: nsName, reconcileId });
          const serviceAccounts = this.caches.serviceAccounts.byIndex('namespace', nsName);
          const result = settle(plan, serviceAccounts, done.patched);
          enqueue.push(...this.record(rc, nsName, result && { result, basis }));
          succeeded = true;
          return { enqueue };
        }
        if (attempt >= 2) throw new Error(`Secret ${nsName}/${plan.secretName} keeps changing; retrying`);
        this.book.remember(rc, nsName, undefined);
        const next = planNamespace({
          ...(await this.world(rc, nsName)),
          ...(done.existing ? { existing: done.existing } : {}),
        });
        if (next.kind !== 'converge') return { enqueue };
        plan = next;
      }
    } catch (err) {
      const c = classify(err);
      if (c.kind === 'terminating') {
        enqueue.push(...this.record(rc, nsName, undefined));
        return { enqueue };
      }
      if (plan.wanted && c.kind !== 'conflict') {
        const patched = this.book.resultOf(rc, nsName)?.result.patched ?? 0;
        const failed = { state: 'failed' as const, reason: reasonOf(c.reason), message: c.message, patched };
        enqueue.push(...this.record(rc, nsName, { result: failed, basis }));
      }
      return { error: err, enqueue };
    } finally {
      this.book.end(rc);
      // The credential changed while this ran (spec, or deletion): what it decided may be stale.
      const now = this.caches.credentials.get(rcName);
      const changed =
        now &&
        (now.metadata.generation !== rc.metadata.generation ||
          Boolean(now.metadata.deletionTimestamp) !== deleting);
      if (changed) enqueue.push({ key: namespaceKey(rcName, nsName) });
      // Cleanup that succeeded lets the credential key look again; a failure waits for its backoff.
      if (now?.metadata.deletionTimestamp && succeeded) enqueue.push({ key: credentialKey(rcName) });
    }
  }

  /** The cached world of one pair; a foreign Secret seen before is read again (the cache cannot). */
  private world(rc: RegistryCredential, nsName: string): NamespaceWorld | Promise<NamespaceWorld> {
    const secretName = secretNameOf(rc);
    if (!this.book.foreign(rc, nsName))
      return this.worldWith(rc, nsName, this.caches.copies.get(`${nsName}/${secretName}`));
    return this.read(nsName, secretName).then((existing) => {
      if (!existing) this.book.remember(rc, nsName, undefined);
      return this.worldWith(rc, nsName, existing);
    });
  }

  private worldWith(rc: RegistryCredential, nsName: string, existing: Secret | undefined): NamespaceWorld {
    const last = this.book.resultOf(rc, nsName);
    const generation = rc.metadata.generation ?? 0;
    return {
      rc,
      name: nsName,
      namespace: this.caches.namespaces.get(nsName),
      credentials: this.caches.credentials.list(),
      credential: this.credentialByName,
      selectionOf: this.selectionOf,
      source: this.options.sources.stateOf(rc),
      copies: this.caches.copies.byIndex('namespace', nsName),
      existing,
      serviceAccounts: this.caches.serviceAccounts.byIndex('namespace', nsName),
      wasSynced:
        last?.result.state === 'synced' &&
        last.basis.slice(0, last.basis.indexOf('/')) === String(generation),
    };
  }

  private readonly credentialByName = (name: string) => this.caches.credentials.get(name);
  private readonly selectionOf = (rc: RegistryCredential) => this.book.selectionOf(rc);

  private async read(namespace: string, name: string): Promise<Secret | undefined> {
    try {
      return projectSecret(await this.options.client.get(`/api/v1/namespaces/${namespace}/secrets/${name}`));
    } catch (err) {
      if (classify(err).kind === 'notFound') return undefined;
      throw err;
    }
  }

  /** Records a namespace's result; a status write follows when status would show a change. */
  private record(
    rc: RegistryCredential,
    ns: string,
    entry: Parameters<Bookkeeping['record']>[2],
  ): Enqueue<Key>[] {
    return this.book.record(rc, ns, entry) ? [status(rc.metadata.name)] : [];
  }
}

/**
 * Namespaces (not terminating) holding a copy of this credential, proven by its UID. Entries on
 * ServiceAccounts are removed there too; an annotation alone (anyone can write one) never makes
 * regcred act in a namespace it does not select.
 */
function namespacesWithCopies(rc: RegistryCredential, caches: Caches): Set<string> {
  const out = new Set<string>();
  for (const copy of caches.copies.byIndex('credential', rc.metadata.name)) {
    const ns = caches.namespaces.get(copy.metadata.namespace!);
    if (ownershipOf(copy, rc).kind === 'ours' && ns && !isTerminating(ns)) out.add(ns.metadata.name);
  }
  return out;
}

/** API reasons are CamelCase already; network errors get a stable one. */
function reasonOf(reason: string): string {
  return /^[A-Z][A-Za-z]*$/.test(reason) ? reason : 'RequestFailed';
}
