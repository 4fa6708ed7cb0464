/**
 * RegistryCredential status, computed from what the reconcilers observed. Pure and deterministic:
 * the same observations, previous status and time give the same status, so an unchanged world is
 * never rewritten (no heartbeat timestamps; a condition's lastTransitionTime moves only when its
 * status does).
 *
 * The conditions follow the kstatus conventions (sigs.k8s.io/cli-utils, which Flux uses) so that
 * GitOps tools read the right state without configuration:
 * - `Ready` reasons: Synced (True) · Suspended (True: regcred does what the spec asks, nothing) ·
 *   Progressing · Failed · Conflicts · SourceInvalid · SourceNotAllowed · InvalidSpec · Deleting.
 * - `Reconciling` (present only while True) while regcred is still getting somewhere: reasons
 *   Progressing, Failed (writes failing, retried with backoff, for less than `stallAfterMs`) and
 *   Deleting (the finalizer's cleanup).
 * - `Stalled` (present only while True) when regcred cannot make progress without a human:
 *   reasons InvalidSpec, SourceInvalid, SourceNotAllowed, Conflicts, and Failed once writes have
 *   failed for `stallAfterMs` (since `failingSince`).
 * - Never both Reconciling and Stalled; `observedGeneration` is written on every status write, in
 *   the status and in each condition.
 * - `SourceValid` reasons: Valid (True) · SourceNotFound · SourceWrongType · SourceMalformed ·
 *   SourceNotAllowed.
 */
import type { Condition, RegistryCredential, RegistryCredentialStatus } from '../api/v1alpha1.ts';
import { secretNameOf, sourceOf } from './plan.ts';

const MAX_FAILURES = 10;

/** How long writes may keep failing (Reconciling) before the credential is Stalled. */
export const DEFAULT_STALL_AFTER_MS = 2 * 60_000;

/** What one namespace's last reconcile found. */
export type NamespaceResult =
  | { state: 'synced'; patched: number }
  | { state: 'conflict'; reason: string; message: string; patched: number }
  | { state: 'failed'; reason: string; message: string; patched: number }
  /** Nothing written: no usable source (the last good copy, if any, stays). */
  | { state: 'waiting'; patched: number };

export type SourceVerdict =
  | { valid: true; resourceVersion: string; message: string }
  | { valid: false; reason: string; message: string };

export interface StatusInput {
  rc: RegistryCredential;
  /** The time, as an RFC 3339 timestamp in whole seconds. */
  now: string;
  specError?: string;
  source: SourceVerdict;
  /** Selected namespaces (not terminating) → their last result, or undefined if not yet reconciled. */
  results: Map<string, NamespaceResult | undefined>;
  /** True when a changed credential was written into existing copies since the last status. */
  rotated: boolean;
  /** How long writes may keep failing before Stalled; default DEFAULT_STALL_AFTER_MS. */
  stallAfterMs?: number;
}

type Draft = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

export function computeStatus({
  rc,
  now,
  specError,
  source,
  results,
  rotated,
  stallAfterMs = DEFAULT_STALL_AFTER_MS,
}: StatusInput): RegistryCredentialStatus {
  const previous = rc.status ?? {};
  const generation = rc.metadata.generation ?? 0;
  let synced = 0;
  let failed = 0;
  let conflicting = 0;
  let pending = 0;
  let patched = 0;
  const failures: { namespace: string; reason: string; message: string }[] = [];
  for (const [namespace, r] of results) {
    if (!r) {
      pending++;
      continue;
    }
    patched += r.patched;
    if (r.state === 'synced') synced++;
    else if (r.state === 'waiting') pending++;
    else {
      if (r.state === 'failed') failed++;
      else conflicting++;
      failures.push({ namespace, reason: r.reason, message: r.message.slice(0, 1024) });
    }
  }
  failures.sort((a, b) => (a.namespace < b.namespace ? -1 : 1));
  const selected = results.size;

  const sourceCondition: Draft = source.valid
    ? { type: 'SourceValid', status: 'True', reason: 'Valid', message: source.message }
    : { type: 'SourceValid', status: 'False', reason: source.reason, message: source.message };

  // Ready, and the one abnormal condition (Reconciling or Stalled) that goes with it, if any.
  let ready: Draft;
  let abnormal: Draft | undefined;
  let failingSince: string | undefined;
  const stalled = (d: Draft): Draft => ({ ...d, type: 'Stalled', status: 'True' });
  const reconciling = (reason: string, message: string): Draft => ({
    type: 'Reconciling',
    status: 'True',
    reason,
    message,
  });
  if (specError) {
    ready = { type: 'Ready', status: 'False', reason: 'InvalidSpec', message: specError };
    abnormal = stalled(ready);
  } else if (rc.spec.suspend) {
    ready = {
      type: 'Ready',
      status: 'True',
      reason: 'Suspended',
      message:
        'spec.suspend is true: regcred changes no copy and no ServiceAccount (copies may be out of date)',
    };
  } else if (!source.valid) {
    const reason = source.reason === 'SourceNotAllowed' ? 'SourceNotAllowed' : 'SourceInvalid';
    ready = {
      type: 'Ready',
      status: 'False',
      reason,
      message: `${source.message}; existing copies are left as they are`,
    };
    abnormal = stalled(ready);
  } else if (failed > 0) {
    ready = {
      type: 'Ready',
      status: 'False',
      reason: 'Failed',
      message: firstFew(`${failed} namespace(s) failed`, failures),
    };
    failingSince = previous.failingSince ?? now;
    const stallsAt = Date.parse(failingSince) + stallAfterMs;
    abnormal =
      Date.parse(now) >= stallsAt
        ? stalled({ ...ready, message: `${ready.message}; failing since ${failingSince}` })
        : reconciling(
            'Failed',
            `retrying the failed writes with backoff; Stalled at ${timestamp(stallsAt)} if they still fail`,
          );
  } else if (conflicting > 0) {
    ready = {
      type: 'Ready',
      status: 'False',
      reason: 'Conflicts',
      message: firstFew(
        `${conflicting} namespace(s) hold a Secret named ${secretNameOf(rc)} that regcred does not own`,
        failures,
      ),
    };
    abnormal = stalled(ready);
  } else if (pending > 0) {
    ready = {
      type: 'Ready',
      status: 'False',
      reason: 'Progressing',
      message: `${synced}/${selected} namespaces synced`,
    };
    abnormal = reconciling('Progressing', ready.message);
  } else {
    ready = {
      type: 'Ready',
      status: 'True',
      reason: 'Synced',
      message: `${selected} namespace(s) synced, ${patched} ServiceAccount(s) patched`,
    };
  }

  const allSynced = source.valid && !specError && !rc.spec.suspend && synced === selected;
  const sourceResourceVersion =
    allSynced && source.valid ? source.resourceVersion : previous.sourceResourceVersion;
  const rotationDone =
    allSynced &&
    rotated &&
    previous.sourceResourceVersion !== undefined &&
    sourceResourceVersion !== previous.sourceResourceVersion;
  const { namespace, name } = sourceOf(rc);

  const status: RegistryCredentialStatus = {
    observedGeneration: generation,
    conditions: conditions([ready, abnormal, sourceCondition], previous, now, generation),
    source: `${namespace}/${name}`,
    secretName: secretNameOf(rc),
    synced: `${synced}/${selected}`,
    namespaces: { selected, synced, failed, conflicting },
    serviceAccounts: { patched },
    failures: failures.slice(0, MAX_FAILURES),
  };
  if (sourceResourceVersion !== undefined) status.sourceResourceVersion = sourceResourceVersion;
  const lastRotationTime = rotationDone ? now : previous.lastRotationTime;
  if (lastRotationTime !== undefined) status.lastRotationTime = lastRotationTime;
  if (failingSince !== undefined) status.failingSince = failingSince;
  if (status.failures?.length === 0) delete status.failures;
  return status;
}

/**
 * The status while the finalizer cleans up: Ready=False and Reconciling=True, both with reason
 * Deleting, for the generation the deletion gave the object; everything else as last written.
 */
export function deletingStatus(rc: RegistryCredential, now: string): RegistryCredentialStatus {
  const previous = rc.status ?? {};
  const generation = rc.metadata.generation ?? 0;
  const message = 'being deleted: regcred removes its copies and ServiceAccount entries, then its finalizer';
  const { failingSince: _cleared, ...rest } = previous;
  const sourceValid = previous.conditions?.find((c) => c.type === 'SourceValid');
  return {
    ...rest,
    observedGeneration: generation,
    conditions: conditions(
      [
        { type: 'Ready', status: 'False', reason: 'Deleting', message },
        { type: 'Reconciling', status: 'True', reason: 'Deleting', message },
        sourceValid,
      ],
      previous,
      now,
      generation,
    ),
  };
}

/**
 * When the status reconciler must look again although nothing else changes: at the time a
 * credential whose writes keep failing becomes Stalled (plus a second, as `now` is in whole
 * seconds). Undefined when no such moment is ahead.
 */
export function recheckAfterMs(
  status: RegistryCredentialStatus,
  nowMs: number,
  stallAfterMs = DEFAULT_STALL_AFTER_MS,
): number | undefined {
  if (status.failingSince === undefined) return undefined;
  if (status.conditions?.some((c) => c.type === 'Stalled')) return undefined;
  return Math.max(0, Date.parse(status.failingSince) + stallAfterMs - nowMs) + 1000;
}

function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

function firstFew(summary: string, failures: { namespace: string; reason: string }[]): string {
  const shown = failures.slice(0, 3).map((f) => `${f.namespace} (${f.reason})`);
  return `${summary}: ${shown.join(', ')}${failures.length > 3 ? ', ...' : ''}`;
}

/** The conditions present, each with its transition time kept while its status stays the same. */
function conditions(
  drafts: (Draft | undefined)[],
  previous: RegistryCredentialStatus,
  now: string,
  generation: number,
): Condition[] {
  return drafts
    .filter((c): c is Draft => c !== undefined)
    .map((c) => {
      const before = previous.conditions?.find((p) => p.type === c.type);
      const lastTransitionTime = before && before.status === c.status ? before.lastTransitionTime : now;
      return {
        type: c.type,
        status: c.status,
        observedGeneration: generation,
        lastTransitionTime,
        reason: c.reason,
        message: c.message,
      };
    });
}
