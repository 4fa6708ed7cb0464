/**
 * RegistryCredential reconciliation. Three kinds of keys, each reconciled from the caches alone:
 *
 * - `credential:<rc>`: the finalizer, and the fan-out: enqueues one key per namespace that the
 *   credential selects or still has something in. On deletion, once nothing is left, removes
 *   the finalizer.
 * - `namespace:<rc>/<ns>`: converges one namespace: first the copy (create, restore, adopt or
 *   update in place), then the ServiceAccounts (add or remove regcred's entry), then removes copies
 *   no longer wanted, so an entry never points at a missing copy. Records the namespace's result.
 * - `status:<rc>`: computes status from the recorded results and writes it only if it changed.
 *
 * Per-namespace keys let thousands of namespaces progress in parallel (bounded by the write
 * limiter), keep one failing namespace from blocking the others, and let a new ServiceAccount be
 * patched without re-walking every namespace.
 *
 * Guarantees: never writes an object regcred does not own (ownership = ownerReference with the live
 * credential's UID); removes only ServiceAccount entries it recorded as its own; writes nothing while
 * the source is unusable or the credential is suspended (deletion still cleans up); leaves
 * terminating namespaces alone; no API read on the hot path (a GET happens only when a create finds
 * an object the label-selected cache cannot see).
 */
import { API_VERSION, KIND, PLURAL, type RegistryCredential } from '../api/v1alpha1.ts';
import { classify } from '../runtime/errors.ts';
import type { EventRecorder, ObjectReference } from '../runtime/events.ts';
import type { KubeClient } from '../runtime/kube.ts';
import type { Limiter } from '../runtime/limiter.ts';
import type { Logger } from '../runtime/logger.ts';
import { mergePatch } from '../runtime/mergepatch.ts';
import type { WorkQueue } from '../runtime/queue.ts';
import { keyOf, type Store } from '../runtime/store.ts';
import { DOCKER_CONFIG_JSON } from './credential.ts';
import {
  FINALIZER,
  isTerminating,
  type Namespace,
  projectRegistryCredential,
  projectSecret,
  projectServiceAccount,
  type Secret,
  type ServiceAccount,
  SOURCE_VERSION_ANNOTATION,
} from './objects.ts';
import {
  addedEntries,
  compileSelection,
  copyPatch,
  DATA_KEY,
  newCopy,
  olderFirst,
  ownershipOf,
  references,
  type Selection,
  secretNameOf,
  serviceAccountPatch,
} from './plan.ts';
import type { Sources } from './sources.ts';
import { computeStatus, type NamespaceResult } from './status.ts';

export interface Caches {
  credentials: Store<RegistryCredential>;
  namespaces: Store<Namespace>;
  /** Indexed by `namespace`. */
  serviceAccounts: Store<ServiceAccount>;
  /** regcred-labelled Secrets; indexed by `namespace` and by `credential` (label). */
  copies: Store<Secret>;
}

/** For a credential being deleted whose spec cannot be compiled: cleanup needs no selection. */
const SELECTS_NOTHING: Selection = {
  namespace: (ns) => (isTerminating(ns) ? 'terminating' : 'notSelected'),
  serviceAccount: () => false,
};

export const credentialKey = (rc: string) => `credential:${rc}`;
export const namespaceKey = (rc: string, ns: string) => `namespace:${rc}/${ns}`;
export const statusKey = (rc: string) => `status:${rc}`;

/** Status writes are coalesced: a change is written at most this long after it happened. */
export const STATUS_DELAY_MS = 1000;

const RC_PATH = `/apis/${API_VERSION}/${PLURAL}`;

export interface ReconcilerOptions {
  client: KubeClient;
  caches: Caches;
  sources: Sources;
  queue: WorkQueue;
  limiter: Limiter;
  events: EventRecorder;
  logger: Logger;
  now?: () => Date;
}

/** What regcred learned about a namespace that its caches cannot show. */
interface Known {
  /** A Secret at the copy's name that is not regcred's and not labelled (found by a create). */
  foreign?: Secret;
}

export class Reconciler {
  private readonly client: KubeClient;
  private readonly caches: Caches;
  private readonly sources: Sources;
  private readonly queue: WorkQueue;
  readonly limiter: Limiter;
  private readonly events: EventRecorder;
  private readonly logger: Logger;
  private readonly now: () => Date;
  /**
   * Per credential: namespace → last result, with the basis (generation and source version) it was
   * computed from. A result on an older basis counts as pending: after a spec change or a rotation,
   * status waits for each namespace to be done again rather than trust what it was before.
   */
  private readonly results = new Map<string, Map<string, { result: NamespaceResult; basis: string }>>();
  private readonly known = new Map<string, Known>();
  /** Credentials whose copies got a changed credential since their last status write. */
  private readonly rotated = new Set<string>();
  /** Per credential: namespace reconciles running now (see reconcileCredential's deletion). */
  private readonly inFlight = new Map<string, number>();
  /** Credentials whose status this process has written or confirmed (see reconcileStatus). */
  private readonly statusSeen = new Set<string>();
  private readonly selections = new Map<
    string,
    { generation: number; result: ReturnType<typeof compileSelection> }
  >();

  constructor(options: ReconcilerOptions) {
    this.client = options.client;
    this.caches = options.caches;
    this.sources = options.sources;
    this.queue = options.queue;
    this.limiter = options.limiter;
    this.events = options.events;
    this.logger = options.logger;
    this.now = options.now ?? (() => new Date());
  }

  readonly reconcile = async (key: string, { reconcileId }: { reconcileId: string }) => {
    const colon = key.indexOf(':');
    const kind = key.slice(0, colon);
    const rest = key.slice(colon + 1);
    if (kind === 'credential') return this.reconcileCredential(rest, reconcileId);
    if (kind === 'status') return this.reconcileStatus(rest);
    const slash = rest.indexOf('/');
    return this.reconcileNamespace(rest.slice(0, slash), rest.slice(slash + 1), reconcileId);
  };

  /** The credential's compiled selection, memoised per generation. */
  selectionOf(rc: RegistryCredential): ReturnType<typeof compileSelection> {
    const generation = rc.metadata.generation ?? 0;
    const memo = this.selections.get(rc.metadata.uid);
    if (memo && memo.generation === generation) return memo.result;
    const result = compileSelection(rc);
    this.selections.set(rc.metadata.uid, { generation, result });
    return result;
  }

  /** Forgets what this process recorded about a credential that no longer exists. */
  forget(rcName: string, uid?: string): void {
    this.results.delete(rcName);
    this.rotated.delete(rcName);
    this.statusSeen.delete(rcName);
    if (uid) this.selections.delete(uid);
    for (const k of this.known.keys()) if (k.startsWith(`${rcName}/`)) this.known.delete(k);
  }

  // --- credential keys -------------------------------------------------------------------------

  private async reconcileCredential(name: string, reconcileId: string): Promise<undefined> {
    const rc = this.caches.credentials.get(name);
    if (!rc) {
      this.forget(name);
      return;
    }
    const finalizers = rc.metadata.finalizers ?? [];
    if (rc.metadata.deletionTimestamp) {
      if (!finalizers.includes(FINALIZER)) return;
      const leftovers = this.namespacesWithLeftovers(rc);
      // A namespace still being reconciled may be writing a copy the caches cannot show yet.
      if (leftovers.size > 0 || (this.inFlight.get(name) ?? 0) > 0) {
        // Nudged, not re-added: a namespace that failed waits out its backoff (no hot loop).
        for (const ns of leftovers) this.queue.addUnlessBackingOff(namespaceKey(name, ns));
        return;
      }
      await this.writeCredential(rc, {
        metadata: {
          resourceVersion: rc.metadata.resourceVersion,
          finalizers: finalizers.filter((f) => f !== FINALIZER),
        },
      });
      this.logger.info('cleaned up; finalizer removed', { credential: name, reconcileId });
      this.forget(name, rc.metadata.uid);
      return;
    }
    if (!finalizers.includes(FINALIZER)) {
      await this.writeCredential(rc, {
        metadata: { resourceVersion: rc.metadata.resourceVersion, finalizers: [...finalizers, FINALIZER] },
      });
    }
    const selection = this.selectionOf(rc);
    const targets = this.namespacesWithLeftovers(rc);
    if (selection.ok) {
      for (const ns of this.caches.namespaces.list()) {
        if (selection.selection.namespace(ns) === 'selected') targets.add(ns.metadata.name);
      }
    }
    for (const ns of targets) this.queue.addUnlessBackingOff(namespaceKey(name, ns));
    this.queue.addAfter(statusKey(name), STATUS_DELAY_MS);
    return;
  }

  /**
   * Namespaces (not terminating) holding a copy of this credential, proven by its UID. Entries on
   * ServiceAccounts are removed there too; an annotation alone (anyone can write one) never makes
   * regcred act in a namespace it does not select.
   */
  private namespacesWithLeftovers(rc: RegistryCredential): Set<string> {
    const out = new Set<string>();
    const alive = (ns: string) => {
      const n = this.caches.namespaces.get(ns);
      return n !== undefined && !isTerminating(n);
    };
    for (const copy of this.caches.copies.byIndex('credential', rc.metadata.name)) {
      const ns = copy.metadata.namespace!;
      if (ownershipOf(copy, rc).kind === 'ours' && alive(ns)) out.add(ns);
    }
    return out;
  }

  private async writeCredential(rc: RegistryCredential, patch: unknown): Promise<void> {
    const updated = await this.limiter.run(() =>
      this.client.mergePatch<unknown>(`${RC_PATH}/${rc.metadata.name}`, patch),
    );
    this.caches.credentials.writeThrough(projectRegistryCredential(updated), rc.metadata.resourceVersion);
  }

  // --- namespace keys --------------------------------------------------------------------------

  private async reconcileNamespace(rcName: string, nsName: string, reconcileId: string): Promise<undefined> {
    const rc = this.caches.credentials.get(rcName);
    if (!rc) return;
    const deleting = Boolean(rc.metadata.deletionTimestamp);
    if (!deleting && !(rc.metadata.finalizers ?? []).includes(FINALIZER)) return; // the credential key adds it first
    const compiled = this.selectionOf(rc);
    // An invalid spec touches nothing (status says why); deletion still cleans up, needing no selection.
    if (!compiled.ok && !deleting) return;
    const selection = compiled.ok ? compiled.selection : SELECTS_NOTHING;
    const ns = this.caches.namespaces.get(nsName);
    const where = ns ? selection.namespace(ns) : 'notSelected';
    if (!ns || where === 'terminating') {
      this.setResult(rc, nsName, undefined);
      return;
    }
    if (rc.spec.suspend && !deleting) return;

    const wanted = !deleting && where === 'selected';
    const basis = this.basisOf(rc);
    this.inFlight.set(rcName, (this.inFlight.get(rcName) ?? 0) + 1);
    let succeeded = false;
    try {
      const result = await this.convergeNamespace(rc, nsName, wanted, selection, reconcileId);
      this.setResult(rc, nsName, wanted ? { result, basis } : undefined);
      succeeded = true;
    } catch (err) {
      const c = classify(err);
      if (c.kind === 'terminating') {
        this.setResult(rc, nsName, undefined);
        return;
      }
      if (wanted && c.kind !== 'conflict') {
        const patched = this.results.get(rcName)?.get(nsName)?.result.patched ?? 0;
        this.setResult(rc, nsName, {
          result: { state: 'failed', reason: reasonOf(c.reason), message: c.message, patched },
          basis,
        });
      }
      throw err;
    } finally {
      const running = (this.inFlight.get(rcName) ?? 1) - 1;
      if (running > 0) this.inFlight.set(rcName, running);
      else this.inFlight.delete(rcName);
      // The credential changed while this ran (spec, or deletion): what it decided may be stale.
      const now = this.caches.credentials.get(rcName);
      const changed =
        now &&
        (now.metadata.generation !== rc.metadata.generation ||
          Boolean(now.metadata.deletionTimestamp) !== deleting);
      if (changed) this.queue.add(namespaceKey(rcName, nsName));
      // Cleanup that succeeded lets the credential key look again; a failure waits for its backoff.
      if (now?.metadata.deletionTimestamp && succeeded) this.queue.add(credentialKey(rcName));
    }
    return;
  }

  private async convergeNamespace(
    rc: RegistryCredential,
    nsName: string,
    wanted: boolean,
    selection: Selection,
    reconcileId: string,
  ): Promise<NamespaceResult> {
    const secretName = secretNameOf(rc);
    const source = this.sources.stateOf(rc);
    const data = source.valid ? { base64: source.dataBase64!, version: source.contentVersion! } : undefined;
    const copies = this.caches.copies
      .byIndex('namespace', nsName)
      .filter((c) => ownershipOf(c, rc).kind === 'ours');
    // Outside its selection, regcred only cleans up where it holds a copy (see namespacesWithLeftovers).
    if (!wanted && copies.length === 0) return { state: 'synced', patched: 0 };

    // 1. The copy, before anything references it.
    let copyReady = false;
    let outcome: NamespaceResult | undefined;
    if (wanted) {
      const claim = this.olderClaimant(rc, nsName, secretName);
      if (claim) {
        outcome = {
          state: 'conflict',
          reason: 'ClaimedByOlderCredential',
          message: `RegistryCredential ${claim} (older) also propagates ${secretName} here`,
          patched: 0,
        };
      } else {
        const copy = await this.ensureCopy(rc, nsName, secretName, data, reconcileId);
        copyReady = copy.ready;
        outcome = copy.outcome;
      }
    }
    // A conflict leaves the namespace alone: its ServiceAccounts, and any copy this credential holds
    // there (an older claimant takes that over in place, entries included, without a gap).
    if (outcome?.state === 'conflict') return outcome;
    // No usable copy yet (say, no valid source for a new secretName): keep the last good copy and
    // the entries pointing at it until the new one exists.
    if (wanted && !copyReady) {
      const referencing = this.caches.serviceAccounts
        .byIndex('namespace', nsName)
        .filter((sa) => selection.serviceAccount(sa) && references(sa, secretName)).length;
      return { state: 'waiting', patched: referencing };
    }

    // 2. ServiceAccounts: add the entry where selected (only once the copy exists), drop ours elsewhere.
    //    A failed patch throws, so step 3 never runs while an entry of ours may still point at a copy.
    let patched = 0;
    const serviceAccounts = this.caches.serviceAccounts.byIndex('namespace', nsName);
    await Promise.all(
      serviceAccounts.map(async (sa) => {
        const want = wanted && copyReady && selection.serviceAccount(sa);
        const patch = serviceAccountPatch(sa, rc, secretName, want);
        let current = sa;
        if (patch) {
          try {
            const updated = await this.limiter.run(() =>
              this.client.mergePatch<unknown>(
                `/api/v1/namespaces/${nsName}/serviceaccounts/${sa.metadata.name}`,
                patch,
              ),
            );
            current = projectServiceAccount(updated);
            this.caches.serviceAccounts.writeThrough(current, sa.metadata.resourceVersion);
          } catch (err) {
            if (classify(err).kind === 'notFound') return; // deleted meanwhile: nothing to patch
            throw err;
          }
        }
        if (want && references(current, secretName)) patched++;
      }),
    );

    // 3. Copies no longer wanted. The resourceVersion precondition keeps a stale view from deleting
    //    a copy that changed meanwhile (e.g. one an older credential just took over).
    for (const copy of copies) {
      if (wanted && copy.metadata.name === secretName) continue;
      await this.limiter.run(() =>
        this.client
          .delete(`/api/v1/namespaces/${nsName}/secrets/${copy.metadata.name}`, {
            uid: copy.metadata.uid,
            resourceVersion: copy.metadata.resourceVersion,
          })
          .catch((err: unknown) => {
            if (classify(err).kind !== 'notFound') throw err;
          }),
      );
      this.caches.copies.deleteThrough(keyOf(copy), copy.metadata.resourceVersion);
      if (!rc.metadata.deletionTimestamp && copy.metadata.name === secretName) {
        this.events.record(
          refTo(copy),
          'Normal',
          'CopyRemoved',
          `namespace no longer selected by RegistryCredential ${rc.metadata.name}`,
        );
      }
    }

    if (!wanted) return { state: 'synced', patched: 0 };
    if (outcome) return { ...outcome, patched };
    const selectedServiceAccounts = this.caches.serviceAccounts
      .byIndex('namespace', nsName)
      .filter((sa) => selection.serviceAccount(sa));
    return selectedServiceAccounts.length === patched
      ? { state: 'synced', patched }
      : { state: 'waiting', patched };
  }

  /** The oldest other credential that claims the same copy name in this namespace, if older than `rc`. */
  private olderClaimant(rc: RegistryCredential, nsName: string, secretName: string): string | undefined {
    const ns = this.caches.namespaces.get(nsName);
    if (!ns) return undefined;
    let oldest: RegistryCredential | undefined;
    for (const other of this.caches.credentials.list()) {
      if (
        other.metadata.uid === rc.metadata.uid ||
        other.metadata.deletionTimestamp ||
        secretNameOf(other) !== secretName
      )
        continue;
      const sel = this.selectionOf(other);
      if (!sel.ok || sel.selection.namespace(ns) !== 'selected') continue;
      if (olderFirst(other, rc) < 0 && (!oldest || olderFirst(other, oldest) < 0)) oldest = other;
    }
    return oldest?.metadata.name;
  }

  /**
   * Makes the copy at `secretName` correct. Returns whether it now exists as regcred's, and an
   * outcome when it cannot (conflict, or no usable source for a copy that does not exist yet).
   * `data` is the source's credential and the version it comes from, when the source is usable.
   */
  private async ensureCopy(
    rc: RegistryCredential,
    nsName: string,
    secretName: string,
    data: { base64: string; version: string } | undefined,
    reconcileId: string,
  ): Promise<{ ready: boolean; outcome?: NamespaceResult }> {
    const dataBase64 = data?.base64;
    const knownKey = `${rc.metadata.name}/${nsName}`;
    const cacheKey = `${nsName}/${secretName}`;
    /** The version the cache holds now: every write-through below is based on it. */
    const cachedRv = this.caches.copies.get(cacheKey)?.metadata.resourceVersion;
    let existing: Secret | undefined = this.caches.copies.get(cacheKey);
    if (!existing) existing = this.known.get(knownKey)?.foreign;
    if (!existing) {
      if (dataBase64 === undefined) return { ready: false, outcome: { state: 'waiting', patched: 0 } };
      try {
        const recreated = this.hadCopy(rc, nsName, secretName);
        const created = projectSecret(
          await this.limiter.run(() =>
            this.client.create<unknown>(
              `/api/v1/namespaces/${nsName}/secrets`,
              newCopy(rc, nsName, dataBase64, data?.version),
            ),
          ),
        );
        this.caches.copies.writeThrough(created, undefined);
        if (recreated) {
          this.events.record(
            refTo(created),
            'Warning',
            'DriftRestored',
            `recreated by RegistryCredential ${rc.metadata.name} after it was deleted`,
          );
        }
        return { ready: true };
      } catch (err) {
        if (classify(err).kind !== 'alreadyExists') throw err;
        existing = await this.readSecret(nsName, secretName);
        if (!existing) throw err; // deleted meanwhile: retry
      }
    } else if (this.known.has(knownKey)) {
      // A foreign Secret seen earlier: look whether it is still there (the cache cannot tell).
      existing = await this.readSecret(nsName, secretName);
      if (!existing) {
        this.known.delete(knownKey);
        return this.ensureCopy(rc, nsName, secretName, data, reconcileId);
      }
    }

    // Here `rc` is the oldest credential claiming this name in this namespace (see
    // convergeNamespace), so a copy a live credential holds is taken over in place. An owner
    // reference that names no live credential (stale, or copied from elsewhere) proves nothing.
    let ownership = ownershipOf(existing, rc);
    if (ownership.kind === 'otherCredential' && !this.isLiveCopyOf(existing, ownership.name))
      ownership = { kind: 'foreign' };
    if (ownership.kind === 'foreign') {
      const adoptable = rc.spec.conflictPolicy === 'Adopt' && existing.type === DOCKER_CONFIG_JSON;
      // Remembered without its data: regcred keeps no one else's Secret in memory.
      if (!this.caches.copies.get(keyOf(existing)))
        this.known.set(knownKey, { foreign: { ...existing, data: undefined } });
      if (adoptable && dataBase64 === undefined)
        return { ready: false, outcome: { state: 'waiting', patched: 0 } };
      if (!adoptable) {
        const why =
          rc.spec.conflictPolicy === 'Adopt'
            ? `is of type ${existing.type ?? 'Opaque'}, not ${DOCKER_CONFIG_JSON}, so it cannot be adopted`
            : 'is not owned by regcred (conflictPolicy: Skip)';
        const message = `Secret ${nsName}/${secretName} ${why}`;
        this.events.record(
          refTo(existing),
          'Warning',
          'Conflict',
          `${message}; RegistryCredential ${rc.metadata.name} leaves it alone`,
        );
        return { ready: false, outcome: { state: 'conflict', reason: 'Conflict', message, patched: 0 } };
      }
    }

    const patch = copyPatch(existing, rc, dataBase64, data?.version);
    if (!patch) return { ready: true };
    const dataChanged =
      patch.data !== undefined &&
      patch.data[DATA_KEY] !== undefined &&
      existing.data?.[DATA_KEY] !== undefined;
    let updated: unknown;
    try {
      updated = await this.limiter.run(() =>
        this.client.mergePatch<unknown>(`/api/v1/namespaces/${nsName}/secrets/${secretName}`, patch),
      );
    } catch (err) {
      if (classify(err).kind !== 'notFound') throw err;
      // Deleted meanwhile: forget it and create it again.
      this.caches.copies.deleteThrough(cacheKey, cachedRv);
      this.known.delete(knownKey);
      return this.ensureCopy(rc, nsName, secretName, data, reconcileId);
    }
    this.caches.copies.writeThrough(projectSecret(updated), cachedRv);
    this.known.delete(knownKey);
    if (ownership.kind === 'foreign') {
      this.events.record(
        refTo(existing),
        'Normal',
        'Adopted',
        `adopted by RegistryCredential ${rc.metadata.name} (conflictPolicy: Adopt)`,
      );
    } else if (ownership.kind === 'otherCredential') {
      this.events.record(
        refTo(existing),
        'Normal',
        'Adopted',
        `taken over from RegistryCredential ${ownership.name} by ${rc.metadata.name}, the older claimant`,
      );
    } else if (dataChanged && existing.metadata.annotations?.[SOURCE_VERSION_ANNOTATION] !== data?.version) {
      // Written from an older source version: a rotation. (Recording the current one, yet holding
      // other data, it was changed by someone else: drift, below.)
      this.rotated.add(rc.metadata.name);
    } else if (patch.data || patch.metadata.labels || patch.metadata.ownerReferences) {
      // Someone changed what regcred owns here (its own annotations following a spec change are routine).
      this.events.record(
        refTo(existing),
        'Warning',
        'DriftRestored',
        `restored by RegistryCredential ${rc.metadata.name} after it was changed`,
      );
    }
    // winston builds and streams a record even for a level it drops: check first on this hot path.
    if (this.logger.isDebugEnabled()) {
      this.logger.debug('copy updated', { credential: rc.metadata.name, namespace: nsName, reconcileId });
    }
    return { ready: true };
  }

  /** Whether `secret` carries the owner reference of the live credential `name` and is a proper copy. */
  private isLiveCopyOf(secret: Secret, name: string): boolean {
    const owner = this.caches.credentials.get(name);
    return (
      owner !== undefined &&
      secret.type === DOCKER_CONFIG_JSON &&
      (secret.metadata.ownerReferences ?? []).some((r) => r.uid === owner.metadata.uid)
    );
  }

  /**
   * Whether regcred held this copy here before (so a missing one was deleted: drift): its last
   * result for the namespace, on the current spec, was synced, or a ServiceAccount there still
   * carries the entry regcred recorded for it (which survives a restart).
   */
  private hadCopy(rc: RegistryCredential, nsName: string, secretName: string): boolean {
    const last = this.results.get(rc.metadata.name)?.get(nsName);
    if (last?.result.state === 'synced' && last.basis.startsWith(`${rc.metadata.generation ?? 0}/`))
      return true;
    return this.caches.serviceAccounts
      .byIndex('namespace', nsName)
      .some((sa) => addedEntries(sa)[secretName] === rc.metadata.name);
  }

  private async readSecret(namespace: string, name: string): Promise<Secret | undefined> {
    try {
      return projectSecret(await this.client.get(`/api/v1/namespaces/${namespace}/secrets/${name}`));
    } catch (err) {
      if (classify(err).kind === 'notFound') return undefined;
      throw err;
    }
  }

  /** What a namespace result depends on: the spec's generation and the source's version. */
  private basisOf(rc: RegistryCredential): string {
    const source = this.sources.stateOf(rc);
    return `${rc.metadata.generation ?? 0}/${source.valid ? source.resourceVersion : `-${source.reason}`}`;
  }

  private setResult(
    rc: RegistryCredential,
    ns: string,
    result: { result: NamespaceResult; basis: string } | undefined,
  ): void {
    const name = rc.metadata.name;
    let map = this.results.get(name);
    const before = map?.get(ns);
    if (result === undefined) {
      if (!map?.delete(ns)) return;
    } else {
      if (!map) {
        map = new Map();
        this.results.set(name, map);
      }
      map.set(ns, result);
      if (before && before.basis === result.basis && sameResult(before.result, result.result)) return;
    }
    this.queue.addAfter(statusKey(name), STATUS_DELAY_MS);
  }

  // --- status keys -----------------------------------------------------------------------------

  private async reconcileStatus(name: string): Promise<undefined> {
    const rc = this.caches.credentials.get(name);
    if (!rc || rc.metadata.deletionTimestamp) return;
    const selection = this.selectionOf(rc);
    const recorded = this.results.get(name);
    const basis = this.basisOf(rc);
    const results = new Map<string, NamespaceResult | undefined>();
    let unknown = 0;
    if (selection.ok) {
      for (const ns of this.caches.namespaces.list()) {
        if (selection.selection.namespace(ns) !== 'selected') continue;
        const r = recorded?.get(ns.metadata.name);
        const current = r?.basis === basis ? r.result : undefined;
        if (!current) unknown++;
        results.set(ns.metadata.name, current);
      }
    }
    // After a restart, results arrive namespace by namespace; a status for the same generation was
    // already written by an earlier run, so wait for all of them rather than report a false
    // "Progressing" (and write it, and write it back).
    const settled = rc.status?.observedGeneration === rc.metadata.generation && !rc.spec.suspend;
    if (unknown > 0 && settled && !this.statusSeen.has(name)) return;
    this.statusSeen.add(name);

    const source = this.sources.stateOf(rc);
    const status = computeStatus({
      rc,
      now: this.now()
        .toISOString()
        .replace(/\.\d+Z$/, 'Z'),
      specError: selection.ok ? undefined : selection.message,
      source,
      results,
      rotated: this.rotated.has(name),
    });
    const patch = mergePatch(rc.status ?? {}, status);
    if (patch === undefined) return;
    const updated = await this.limiter.run(() =>
      this.client.mergePatch<unknown>(`${RC_PATH}/${name}/status`, { status: patch }),
    );
    this.caches.credentials.writeThrough(projectRegistryCredential(updated), rc.metadata.resourceVersion);
    if (status.lastRotationTime !== rc.status?.lastRotationTime) this.rotated.delete(name);
    this.announce(rc, status);
    return;
  }

  /** Events on the credential, one per change of a condition's reason (aggregated, never per namespace). */
  private announce(rc: RegistryCredential, status: NonNullable<RegistryCredential['status']>): void {
    const ref: ObjectReference = {
      apiVersion: API_VERSION,
      kind: KIND,
      name: rc.metadata.name,
      uid: rc.metadata.uid,
    };
    for (const c of status.conditions ?? []) {
      const before = rc.status?.conditions?.find((p) => p.type === c.type);
      if (before?.reason === c.reason) continue;
      if (c.type === 'SourceValid' && c.status === 'True' && !before) continue; // routine
      if (c.type === 'Ready' && c.reason === 'Progressing') continue;
      this.events.record(ref, c.status === 'True' ? 'Normal' : 'Warning', c.reason, c.message);
    }
    if (status.lastRotationTime && status.lastRotationTime !== rc.status?.lastRotationTime) {
      this.events.record(
        ref,
        'Normal',
        'Rotated',
        `the changed credential reached all ${status.namespaces?.synced} namespaces`,
      );
    }
  }
}

function sameResult(a: NamespaceResult, b: NamespaceResult): boolean {
  return (
    a.state === b.state &&
    a.patched === b.patched &&
    (a as { reason?: string }).reason === (b as { reason?: string }).reason &&
    (a as { message?: string }).message === (b as { message?: string }).message
  );
}

function refTo(secret: Secret): ObjectReference {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    name: secret.metadata.name,
    namespace: secret.metadata.namespace,
    uid: secret.metadata.uid,
  };
}

/** API reasons are CamelCase already; network errors get a stable one. */
function reasonOf(reason: string): string {
  return /^[A-Z][A-Za-z]*$/.test(reason) ? reason : 'RequestFailed';
}
