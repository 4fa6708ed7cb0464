/**
 * RegistryCredential status, computed from what the reconcilers observed. Pure and deterministic:
 * the same observations and previous status give the same status, so an unchanged world is never
 * rewritten (no heartbeat timestamps; a condition's lastTransitionTime moves only when its status
 * does).
 *
 * Ready reasons (the documented set):
 *   Synced (True) · Progressing · Conflicts · Failed · SourceInvalid · SourceNotAllowed · Suspended · InvalidSpec
 * SourceValid reasons:
 *   Valid (True) · SourceNotFound · SourceWrongType · SourceMalformed · SourceNotAllowed
 */
import type { Condition, RegistryCredential, RegistryCredentialStatus } from '../api/v1alpha1.ts';
import { secretNameOf, sourceOf } from './plan.ts';

const MAX_FAILURES = 10;

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
  now: string;
  specError?: string;
  source: SourceVerdict;
  /** Selected namespaces (not terminating) → their last result, or undefined if not yet reconciled. */
  results: Map<string, NamespaceResult | undefined>;
  /** True when a changed credential was written into existing copies since the last status. */
  rotated: boolean;
}

export function computeStatus({
  rc,
  now,
  specError,
  source,
  results,
  rotated,
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

  const sourceCondition: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> = source.valid
    ? { type: 'SourceValid', status: 'True', reason: 'Valid', message: source.message }
    : { type: 'SourceValid', status: 'False', reason: source.reason, message: source.message };

  let ready: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;
  if (specError) ready = { type: 'Ready', status: 'False', reason: 'InvalidSpec', message: specError };
  else if (rc.spec.suspend) {
    ready = {
      type: 'Ready',
      status: 'False',
      reason: 'Suspended',
      message: 'spec.suspend is true: regcred changes no copy and no ServiceAccount',
    };
  } else if (!source.valid) {
    const reason = source.reason === 'SourceNotAllowed' ? 'SourceNotAllowed' : 'SourceInvalid';
    ready = {
      type: 'Ready',
      status: 'False',
      reason,
      message: `${source.message}; existing copies are left as they are`,
    };
  } else if (failed > 0) {
    ready = {
      type: 'Ready',
      status: 'False',
      reason: 'Failed',
      message: firstFew(`${failed} namespace(s) failed`, failures),
    };
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
  } else if (pending > 0) {
    ready = {
      type: 'Ready',
      status: 'False',
      reason: 'Progressing',
      message: `${synced}/${selected} namespaces synced`,
    };
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
    conditions: [
      withTransition(ready, previous, now, generation),
      withTransition(sourceCondition, previous, now, generation),
    ],
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
  if (status.failures?.length === 0) delete status.failures;
  return status;
}

function firstFew(summary: string, failures: { namespace: string; reason: string }[]): string {
  const shown = failures.slice(0, 3).map((f) => `${f.namespace} (${f.reason})`);
  return `${summary}: ${shown.join(', ')}${failures.length > 3 ? ', ...' : ''}`;
}

function withTransition(
  c: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>,
  previous: RegistryCredentialStatus,
  now: string,
  generation: number,
): Condition {
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
}
