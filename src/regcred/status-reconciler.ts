/**
 * The status reconciler: a RegistryCredential's status computed by status.ts from the results the
 * namespace reconciles recorded (bookkeeping.ts), written only when it changed, with one Event per
 * change of a condition's reason. While the finalizer cleans up, status says Deleting.
 *
 * Guarantees: never writes status from a partial view after a restart (it waits until every
 * selected namespace reported for a generation whose status was already written); asks to run
 * again at the moment failing writes turn into Stalled.
 */
import { API_VERSION, KIND, type RegistryCredential } from '../api/v1alpha1.ts';
import { classify } from '../runtime/errors.ts';
import type { EventRecorder, ObjectReference } from '../runtime/events.ts';
import { mergePatch } from '../runtime/mergepatch.ts';
import type { Outcome } from '../runtime/reconcile.ts';
import { type Bookkeeping, basisOf } from './bookkeeping.ts';
import type { Caches, Executor } from './executor.ts';
import type { Key } from './keys.ts';
import type { settle } from './namespace-plan.ts';
import { FINALIZER } from './objects.ts';
import type { Sources } from './sources.ts';
import { computeStatus, DEFAULT_STALL_AFTER_MS, deletingStatus, recheckAfterMs } from './status.ts';

export interface StatusReconcilerOptions {
  caches: Caches;
  book: Bookkeeping;
  sources: Sources;
  executor: Executor;
  events: EventRecorder;
  now?: () => Date;
  /** How long writes may keep failing before the credential is Stalled (status.ts). */
  stallAfterMs?: number;
}

type Result = Outcome<Key> | undefined;

export class StatusReconciler {
  private readonly options: StatusReconcilerOptions;
  private readonly now: () => Date;

  constructor(options: StatusReconcilerOptions) {
    this.options = options;
    this.now = options.now ?? (() => new Date());
  }

  async reconcile(name: string): Promise<Result> {
    const rc = this.options.caches.credentials.get(name);
    if (!rc) return;
    if (rc.metadata.deletionTimestamp) return this.deletionStatus(rc);
    const compiled = this.options.book.selectionOf(rc);
    const source = this.options.sources.stateOf(rc);
    const basis = basisOf(rc, source);
    const results = new Map<string, ReturnType<typeof settle>>();
    let unknown = 0;
    if (compiled.ok) {
      for (const ns of this.options.caches.namespaces.list()) {
        if (compiled.selection.namespace(ns) !== 'selected') continue;
        const r = this.options.book.resultOf(rc, ns.metadata.name);
        const current = r?.basis === basis ? r.result : undefined;
        if (!current) unknown++;
        results.set(ns.metadata.name, current);
      }
    }
    // After a restart, results arrive namespace by namespace; a status for the same generation was
    // already written by an earlier run, so wait for all of them rather than report a false
    // "Progressing" (and write it, and write it back).
    const settled = rc.status?.observedGeneration === rc.metadata.generation && !rc.spec.suspend;
    if (unknown > 0 && settled && !this.options.book.statusSeen(rc)) return;
    this.options.book.markStatusSeen(rc);

    const now = this.now();
    const stallAfterMs = this.options.stallAfterMs ?? DEFAULT_STALL_AFTER_MS;
    const next = computeStatus({
      rc,
      now: seconds(now),
      specError: compiled.ok ? undefined : compiled.message,
      source,
      results,
      rotated: this.options.book.rotated(rc),
      stallAfterMs,
    });
    // Writes that keep failing become Stalled at a set time, with or without another event.
    const recheck = recheckAfterMs(next, now.getTime(), stallAfterMs);
    const after: Result = recheck === undefined ? undefined : { requeueAfterMs: recheck };
    const patch = mergePatch(rc.status ?? {}, next);
    if (patch === undefined) return after;
    await this.options.executor.patchCredential(rc, { status: patch }, '/status');
    if (next.lastRotationTime !== rc.status?.lastRotationTime) this.options.book.markRotated(rc, false);
    this.announce(rc, next);
    return after;
  }

  /** While the finalizer cleans up: Deleting, written once. After it, nothing (the object goes). */
  private async deletionStatus(rc: RegistryCredential): Promise<Result> {
    if (!rc.metadata.finalizers?.includes(FINALIZER)) return;
    const next = deletingStatus(rc, seconds(this.now()));
    const patch = mergePatch(rc.status ?? {}, next);
    if (patch === undefined) return;
    try {
      await this.options.executor.patchCredential(rc, { status: patch }, '/status');
    } catch (err) {
      if (classify(err).kind === 'notFound') return; // the deletion finished first
      throw err;
    }
    this.announce(rc, next);
  }

  /** Events on the credential, one per change of a condition's reason (aggregated, never per namespace). */
  private announce(rc: RegistryCredential, next: NonNullable<RegistryCredential['status']>): void {
    const ref: ObjectReference = {
      apiVersion: API_VERSION,
      kind: KIND,
      name: rc.metadata.name,
      uid: rc.metadata.uid,
    };
    const events = this.options.events;
    const conditionOf = (s: RegistryCredential['status'], type: string) =>
      s?.conditions?.find((c) => c.type === type);
    for (const c of next.conditions ?? []) {
      const before = conditionOf(rc.status, c.type);
      if (c.type === 'Reconciling' || c.type === 'Stalled') continue; // Ready's reason tells
      if (before?.reason === c.reason) continue;
      if (c.type === 'SourceValid' && c.status === 'True' && !before) continue; // routine
      if (c.type === 'Ready' && c.reason === 'Progressing') continue;
      const normal = c.status === 'True' || c.reason === 'Deleting';
      events.record(ref, normal ? 'Normal' : 'Warning', c.reason, c.message);
    }
    // Failed writes turning into Stalled keep Ready's reason: the one change an Event must tell.
    const stalled = conditionOf(next, 'Stalled');
    if (stalled?.reason === 'Failed' && !conditionOf(rc.status, 'Stalled'))
      events.record(ref, 'Warning', 'Stalled', stalled.message);
    if (next.lastRotationTime && next.lastRotationTime !== rc.status?.lastRotationTime) {
      events.record(
        ref,
        'Normal',
        'Rotated',
        `the changed credential reached all ${next.namespaces?.synced} namespaces`,
      );
    }
  }
}

/** An RFC 3339 timestamp in whole seconds, as status carries them. */
function seconds(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}
