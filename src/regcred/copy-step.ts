/**
 * The copy step of a namespace plan (namespace-plan.ts): what to do with the Secret at the copy's
 * name in a namespace the credential selects, and why. Pure.
 *
 * - An older live credential claiming the same name keeps it: stop with a conflict.
 * - No Secret there: create the copy (a Warning when regcred held it before: it was deleted), or
 *   wait when there is no usable source.
 * - Someone else's Secret: leave it alone and warn (Skip), or adopt a dockerconfigjson one
 *   (Adopt); a younger live credential's copy is taken over by the older claimant; an owner
 *   reference to a credential that is not live proves nothing.
 * - regcred's copy: patch what differs, telling a rotation (it records an older source version)
 *   from drift (it records the current one).
 */

import type { RegistryCredential } from '../api/v1alpha1.ts';
import { DOCKER_CONFIG_JSON } from './credential.ts';
import type { CopyChange, CopyStep, NamespaceWorld, PlannedEvent } from './namespace-plan.ts';
import { type Secret, SOURCE_VERSION_ANNOTATION } from './objects.ts';
import {
  addedEntries,
  type CopyPatch,
  copyPatch,
  DATA_KEY,
  newCopy,
  olderFirst,
  ownershipOf,
  references,
  type Selection,
  secretNameOf,
} from './plan.ts';
import type { NamespaceResult } from './status.ts';

/** The copy at `secretName` in a namespace the credential selects. */
export function copyStep(world: NamespaceWorld, secretName: string, selection: Selection): CopyStep {
  const { rc, source } = world;
  const name = rc.metadata.name;
  const claimant = olderClaimant(world, secretName);
  if (claimant) {
    // Its copy here, if any, and its entries stay: the older claimant takes them over in place.
    const message = `RegistryCredential ${claimant} (older) also propagates ${secretName} here`;
    return stopWith({ state: 'conflict', reason: 'ClaimedByOlderCredential', message, patched: 0 });
  }
  const data = source.valid ? source.dataBase64 : undefined;
  const version = source.valid ? source.contentVersion : undefined;
  const existing = world.existing;
  if (!existing) {
    if (data === undefined) return waiting(world, secretName, selection);
    const recreated =
      world.wasSynced || world.serviceAccounts.some((sa) => addedEntries(sa)[secretName] === name);
    const events = recreated
      ? [
          event(
            'copy',
            'Warning',
            'DriftRestored',
            `recreated by RegistryCredential ${name} after it was deleted`,
          ),
        ]
      : [];
    return { kind: 'create', body: newCopy(rc, world.name, data, version), events };
  }

  // A reference to a credential that is not live (stale, or copied from elsewhere) proves nothing.
  let ownership = ownershipOf(existing, rc);
  if (ownership.kind === 'otherCredential' && !isLiveCopyOf(world, existing, ownership.name))
    ownership = { kind: 'foreign' };
  if (ownership.kind === 'foreign') {
    const cached = world.copies.some((c) => c.metadata.name === existing.metadata.name);
    const remember = cached ? undefined : withoutData(existing);
    const adoptable = rc.spec.conflictPolicy === 'Adopt' && existing.type === DOCKER_CONFIG_JSON;
    if (adoptable && data === undefined) return { ...waiting(world, secretName, selection), remember };
    if (!adoptable) {
      const why =
        rc.spec.conflictPolicy === 'Adopt'
          ? `is of type ${existing.type ?? 'Opaque'}, not ${DOCKER_CONFIG_JSON}, so it cannot be adopted`
          : 'is not owned by regcred (conflictPolicy: Skip)';
      const message = `Secret ${world.name}/${secretName} ${why}`;
      return {
        kind: 'stop',
        result: { state: 'conflict', reason: 'Conflict', message, patched: 0 },
        events: [
          event(existing, 'Warning', 'Conflict', `${message}; RegistryCredential ${name} leaves it alone`),
        ],
        remember,
      };
    }
  }

  const patch = copyPatch(existing, rc, data, version);
  if (!patch) return { kind: 'none' };
  const change = changeOf(ownership.kind, existing, patch, version);
  const events: PlannedEvent[] = [];
  if (change === 'adoption')
    events.push(
      event(existing, 'Normal', 'Adopted', `adopted by RegistryCredential ${name} (conflictPolicy: Adopt)`),
    );
  if (change === 'takeover' && ownership.kind === 'otherCredential')
    events.push(
      event(
        existing,
        'Normal',
        'Adopted',
        `taken over from RegistryCredential ${ownership.name} by ${name}, the older claimant`,
      ),
    );
  if (change === 'drift')
    events.push(
      event(
        existing,
        'Warning',
        'DriftRestored',
        `restored by RegistryCredential ${name} after it was changed`,
      ),
    );
  return { kind: 'patch', name: secretName, patch, change, events };
}

function changeOf(
  ownership: 'ours' | 'otherCredential' | 'foreign',
  existing: Secret,
  patch: CopyPatch,
  version: string | undefined,
): CopyChange {
  if (ownership === 'foreign') return 'adoption';
  if (ownership === 'otherCredential') return 'takeover';
  const dataChanged = patch.data?.[DATA_KEY] !== undefined && existing.data?.[DATA_KEY] !== undefined;
  // Written from an older source version: a rotation. Recording the current one, yet holding
  // other data, it was changed by someone else: drift.
  if (dataChanged && existing.metadata.annotations?.[SOURCE_VERSION_ANNOTATION] !== version)
    return 'rotation';
  // Someone changed what regcred owns (its own annotations following a spec change are routine).
  return patch.data || patch.metadata.labels || patch.metadata.ownerReferences ? 'drift' : 'routine';
}

/** The oldest other live credential claiming `secretName` in this namespace, if older than `rc`. */
function olderClaimant(world: NamespaceWorld, secretName: string): string | undefined {
  const { rc, namespace } = world;
  let oldest: RegistryCredential | undefined;
  for (const other of world.credentials) {
    if (other.metadata.uid === rc.metadata.uid || other.metadata.deletionTimestamp) continue;
    if (secretNameOf(other) !== secretName) continue;
    const sel = world.selectionOf(other);
    if (!sel.ok || !namespace || sel.selection.namespace(namespace) !== 'selected') continue;
    if (olderFirst(other, rc) < 0 && (!oldest || olderFirst(other, oldest) < 0)) oldest = other;
  }
  return oldest?.metadata.name;
}

/** Whether `secret` carries the owner reference of the live credential `name` and is a proper copy. */
function isLiveCopyOf(world: NamespaceWorld, secret: Secret, name: string): boolean {
  const owner = world.credential(name);
  return (
    owner !== undefined &&
    secret.type === DOCKER_CONFIG_JSON &&
    (secret.metadata.ownerReferences ?? []).some((r) => r.uid === owner.metadata.uid)
  );
}

/** No usable copy yet: the last good copy and the entries pointing at it stay until there is one. */
function waiting(
  world: NamespaceWorld,
  secretName: string,
  selection: Selection,
): Extract<CopyStep, { kind: 'stop' }> {
  const patched = world.serviceAccounts.filter(
    (sa) => selection.serviceAccount(sa) && references(sa, secretName),
  ).length;
  return stopWith({ state: 'waiting', patched });
}

function stopWith(result: NamespaceResult): Extract<CopyStep, { kind: 'stop' }> {
  return { kind: 'stop', result, events: [] };
}

export function event(
  about: PlannedEvent['about'],
  type: PlannedEvent['type'],
  reason: string,
  message: string,
): PlannedEvent {
  return { about, type, reason, message };
}

/** regcred keeps no one else's Secret data in memory. */
function withoutData(secret: Secret): Secret {
  return { ...secret, data: undefined };
}
