/**
 * The decision for one (RegistryCredential, namespace) pair: from the cached world to a plan of
 * writes. Pure: no I/O, deterministic, and the plan of a converged world writes nothing.
 *
 * Order, which the executor keeps: the copy first (so no entry ever points at a missing copy),
 * then the ServiceAccounts, then the removal of copies no longer wanted (after the entries that
 * referenced them are gone). A conflict, or no usable copy yet, stops after the copy step.
 *
 * Invariants:
 * - An object is regcred's only if it carries an ownerReference with the live credential's UID; a
 *   Secret that is not is neither written nor removed, except to adopt it under `Adopt`, or to take
 *   over the copy of a live credential younger than this one (the older claimant keeps a name).
 * - ServiceAccount patches remove only entries regcred recorded as its own (see plan.ts).
 * - Nothing is written for a suspended credential or an invalid spec (unless deleting), nor in a
 *   terminating or missing namespace.
 */
import type { RegistryCredential } from '../api/v1alpha1.ts';
import { copyStep, event } from './copy-step.ts';
import { FINALIZER, isTerminating, type Namespace, type Secret, type ServiceAccount } from './objects.ts';
import {
  type CopyPatch,
  type compileSelection,
  type newCopy,
  ownershipOf,
  type Selection,
  secretNameOf,
  serviceAccountPatch,
} from './plan.ts';
import type { SourceState } from './sources.ts';
import type { NamespaceResult } from './status.ts';

export type Compiled = ReturnType<typeof compileSelection>;

export interface NamespaceWorld {
  rc: RegistryCredential;
  /** The namespace's name, and the namespace if the cache has it. */
  name: string;
  namespace: Namespace | undefined;
  /** Every RegistryCredential (to find an older claimant of the same copy name), and one by name. */
  credentials: Iterable<RegistryCredential>;
  credential: (name: string) => RegistryCredential | undefined;
  /** The compiled selection of a credential (memoised by the caller). */
  selectionOf: (rc: RegistryCredential) => Compiled;
  source: SourceState;
  /** regcred-labelled Secrets in the namespace. */
  copies: readonly Secret[];
  /** The Secret at the copy's name: from the cache, or a foreign one regcred read (without data). */
  existing: Secret | undefined;
  serviceAccounts: readonly ServiceAccount[];
  /** This namespace was synced on the current spec: a missing copy was deleted by someone. */
  wasSynced: boolean;
}

export interface PlannedEvent {
  /** `copy`: the copy as written by this plan's copy step. */
  about: 'copy' | Secret;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** Why a copy's data or metadata is patched: a rotation is counted, the others are announced. */
export type CopyChange = 'rotation' | 'drift' | 'adoption' | 'takeover' | 'routine';

export type CopyStep =
  | { kind: 'none' }
  | { kind: 'create'; body: ReturnType<typeof newCopy>; events: PlannedEvent[] }
  | { kind: 'patch'; name: string; patch: CopyPatch; change: CopyChange; events: PlannedEvent[] }
  /** Stop here with this result; `remember` a foreign Secret the cache cannot show. */
  | { kind: 'stop'; result: NamespaceResult; events: PlannedEvent[]; remember?: Secret };

export interface ServiceAccountStep {
  sa: ServiceAccount;
  /** Whether the credential's entry belongs on it (it is selected and the copy exists). */
  want: boolean;
  patch: ReturnType<typeof serviceAccountPatch>;
}

export interface Removal {
  copy: Secret;
  events: PlannedEvent[];
}

export type NamespacePlan =
  /** Nothing to do now; what was recorded for the namespace stays. */
  | { kind: 'skip' }
  /** The namespace is gone or terminating: nothing to do, and nothing to record. */
  | { kind: 'gone' }
  | {
      kind: 'converge';
      /** Whether the namespace should hold the copy: then it has a result for status. */
      wanted: boolean;
      secretName: string;
      selection: Selection;
      copy: CopyStep;
      serviceAccounts: ServiceAccountStep[];
      removals: Removal[];
    };

/** For a credential being deleted whose spec cannot be compiled: cleanup needs no selection. */
const SELECTS_NOTHING: Selection = {
  namespace: (ns) => (isTerminating(ns) ? 'terminating' : 'notSelected'),
  serviceAccount: () => false,
};

export function planNamespace(world: NamespaceWorld): NamespacePlan {
  const { rc, namespace } = world;
  const deleting = Boolean(rc.metadata.deletionTimestamp);
  if (!deleting && !(rc.metadata.finalizers ?? []).includes(FINALIZER)) return { kind: 'skip' }; // added first
  const compiled = world.selectionOf(rc);
  if (!compiled.ok && !deleting) return { kind: 'skip' }; // status says why
  const selection = compiled.ok ? compiled.selection : SELECTS_NOTHING;
  const where = namespace ? selection.namespace(namespace) : 'notSelected';
  if (!namespace || where === 'terminating') return { kind: 'gone' };
  if (rc.spec.suspend && !deleting) return { kind: 'skip' };

  const wanted = !deleting && where === 'selected';
  const secretName = secretNameOf(rc);
  const ours = world.copies.filter((c) => ownershipOf(c, rc).kind === 'ours');
  const plan = {
    kind: 'converge' as const,
    wanted,
    secretName,
    selection,
    copy: { kind: 'none' } as CopyStep,
    serviceAccounts: [] as ServiceAccountStep[],
    removals: [] as Removal[],
  };
  // Outside its selection, regcred only cleans up where it holds a copy.
  if (!wanted && ours.length === 0) return plan;

  if (wanted) {
    plan.copy = copyStep(world, secretName, selection);
    if (plan.copy.kind === 'stop') return plan;
  }
  plan.serviceAccounts = world.serviceAccounts.map((sa) => {
    const want = wanted && selection.serviceAccount(sa);
    return { sa, want, patch: serviceAccountPatch(sa, rc, secretName, want) };
  });
  plan.removals = ours
    .filter((copy) => !(wanted && copy.metadata.name === secretName))
    .map((copy) => ({
      copy,
      events:
        !deleting && copy.metadata.name === secretName
          ? [
              event(
                copy,
                'Normal',
                'CopyRemoved',
                `namespace no longer selected by RegistryCredential ${rc.metadata.name}`,
              ),
            ]
          : [],
    }));
  return plan;
}

/** After the steps ran: synced when every selected ServiceAccount references the copy. */
export function settle(
  plan: Extract<NamespacePlan, { kind: 'converge' }>,
  serviceAccountsNow: readonly ServiceAccount[],
  patched: number,
): NamespaceResult | undefined {
  if (!plan.wanted) return undefined;
  if (plan.copy.kind === 'stop') return plan.copy.result;
  const selected = serviceAccountsNow.filter((sa) => plan.selection.serviceAccount(sa)).length;
  return selected === patched ? { state: 'synced', patched } : { state: 'waiting', patched };
}
