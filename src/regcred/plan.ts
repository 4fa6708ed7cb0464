/**
 * The pure heart of regcred: from cached world state to the writes that converge it.
 * No I/O here; everything is a function of its arguments, and each function returns nothing
 * (`undefined`) when the world already matches, so a converged world costs zero writes.
 *
 * Invariants:
 * - A copy is regcred's only if it carries an ownerReference with the live RegistryCredential's UID.
 *   Labels and annotations are for humans and for watch selection, never proof of ownership.
 * - On a ServiceAccount, regcred removes only entries recorded in its annotation as added by that
 *   RegistryCredential; an entry that was there before regcred stays, in place and in order.
 */
import { API_VERSION, KIND, type OwnerReference, type RegistryCredential } from '../api/v1alpha1.ts';
import { DOCKER_CONFIG_JSON } from './credential.ts';
import {
  CREDENTIAL_ANNOTATION,
  CREDENTIAL_LABEL,
  isTerminating,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  type Namespace,
  PULL_SECRETS_ANNOTATION,
  type Secret,
  type ServiceAccount,
  SOURCE_ANNOTATION,
  SOURCE_VERSION_ANNOTATION,
} from './objects.ts';
import { compileGlobs, compileSelector } from './selector.ts';

export const DATA_KEY = '.dockerconfigjson';

export function secretNameOf(rc: RegistryCredential): string {
  return rc.spec.secretName || rc.metadata.name;
}

export function sourceOf(rc: RegistryCredential): { namespace: string; name: string } {
  return rc.spec.source.secretRef;
}

export type NamespaceSelection = 'selected' | 'notSelected' | 'terminating';

export interface Selection {
  namespace(ns: Namespace): NamespaceSelection;
  serviceAccount(sa: ServiceAccount): boolean;
}

/**
 * Compiles the RegistryCredential's namespace and ServiceAccount selection. Fails with a message
 * for what the CRD schema could not judge (e.g. a label key the schema's CEL approximated).
 */
export function compileSelection(
  rc: RegistryCredential,
): { ok: true; selection: Selection } | { ok: false; message: string } {
  const spec = rc.spec;
  const nsSelector = spec.namespaces.selector ? compileSelector(spec.namespaces.selector) : undefined;
  if (nsSelector && !nsSelector.ok)
    return { ok: false, message: `spec.namespaces.selector: ${nsSelector.message}` };
  const saSpec = spec.serviceAccounts ?? { names: ['default'] };
  const saSelector = saSpec.selector ? compileSelector(saSpec.selector) : undefined;
  if (saSelector && !saSelector.ok)
    return { ok: false, message: `spec.serviceAccounts.selector: ${saSelector.message}` };

  const names = new Set(spec.namespaces.names ?? []);
  const excluded = compileGlobs(spec.namespaces.exclude ?? []);
  const sourceNamespace = spec.source.secretRef.namespace;
  const saNames = new Set(saSpec.names ?? []);
  const allServiceAccounts = saNames.has('*');
  return {
    ok: true,
    selection: {
      namespace(ns) {
        if (isTerminating(ns)) return 'terminating';
        const name = ns.metadata.name;
        if (name === sourceNamespace || excluded(name)) return 'notSelected';
        if (names.has(name) || nsSelector?.selector.matches(ns.metadata.labels)) return 'selected';
        return 'notSelected';
      },
      serviceAccount(sa) {
        return (
          allServiceAccounts ||
          saNames.has(sa.metadata.name) ||
          Boolean(saSelector?.selector.matches(sa.metadata.labels))
        );
      },
    },
  };
}

/** Older first: creation time, then name. The oldest claimant of a (namespace, name) keeps it. */
export function olderFirst(a: RegistryCredential, b: RegistryCredential): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

function ownerReferenceTo(rc: RegistryCredential): OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: rc.metadata.name,
    uid: rc.metadata.uid,
    controller: true,
  };
}

export type Ownership = { kind: 'ours' } | { kind: 'otherCredential'; name: string } | { kind: 'foreign' };

function isCredentialReference(r: OwnerReference): boolean {
  return r.kind === KIND && r.apiVersion.startsWith('regcred.dev/');
}

export function ownershipOf(secret: Secret, rc: RegistryCredential): Ownership {
  const refs = secret.metadata.ownerReferences ?? [];
  if (refs.some((r) => r.uid === rc.metadata.uid)) return { kind: 'ours' };
  const other = refs.find(isCredentialReference);
  return other ? { kind: 'otherCredential', name: other.name } : { kind: 'foreign' };
}

function ourLabels(rc: RegistryCredential): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [CREDENTIAL_LABEL]: rc.metadata.name };
}

function ourAnnotations(rc: RegistryCredential): Record<string, string> {
  const { namespace, name } = sourceOf(rc);
  return { [CREDENTIAL_ANNOTATION]: rc.metadata.name, [SOURCE_ANNOTATION]: `${namespace}/${name}` };
}

/**
 * A new copy, built from scratch: regcred's own metadata only, never the source's. `version` is
 * the source version whose credential `dataBase64` is (see SOURCE_VERSION_ANNOTATION).
 */
export function newCopy(rc: RegistryCredential, namespace: string, dataBase64: string, version?: string) {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: secretNameOf(rc),
      namespace,
      labels: ourLabels(rc),
      annotations: { ...ourAnnotations(rc), ...(version ? { [SOURCE_VERSION_ANNOTATION]: version } : {}) },
      ownerReferences: [ownerReferenceTo(rc)],
    },
    type: DOCKER_CONFIG_JSON,
    data: { [DATA_KEY]: dataBase64 },
  };
}

/**
 * The merge patch that makes `existing` a correct copy (restoring drift, or adopting it), or
 * `undefined` when it already is one. Labels, annotations and ownerReferences that others added
 * stay; data keys other than `.dockerconfigjson` are removed. With `dataBase64` undefined (no
 * valid source right now) the data is left as it is; when the data is written, `version` (the
 * source version it comes from) is recorded with it, and only then: a version change alone writes
 * nothing. The patch carries the resourceVersion it was computed from, so it fails with a conflict
 * if the Secret changed meanwhile.
 */
export interface CopyPatch {
  metadata: {
    resourceVersion: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: OwnerReference[];
  };
  data?: Record<string, string | null>;
}

export function copyPatch(
  existing: Secret,
  rc: RegistryCredential,
  dataBase64: string | undefined,
  version?: string,
): CopyPatch | undefined {
  const metadata: Omit<CopyPatch['metadata'], 'resourceVersion'> = {};
  const labels = changed(existing.metadata.labels, ourLabels(rc));
  if (labels) metadata.labels = labels;
  let annotations = changed(existing.metadata.annotations, ourAnnotations(rc));
  // Exactly one RegistryCredential owns a copy: taking one over drops the previous one's reference.
  const refs = existing.metadata.ownerReferences ?? [];
  const kept = refs.filter((r) => !isCredentialReference(r) || r.uid === rc.metadata.uid);
  if (kept.length !== refs.length || !kept.some((r) => r.uid === rc.metadata.uid)) {
    metadata.ownerReferences = kept.some((r) => r.uid === rc.metadata.uid)
      ? kept
      : [...kept, ownerReferenceTo(rc)];
  }
  const data: Record<string, string | null> = {};
  if (dataBase64 !== undefined) {
    for (const k of Object.keys(existing.data ?? {})) if (k !== DATA_KEY) data[k] = null;
    if (existing.data?.[DATA_KEY] !== dataBase64) data[DATA_KEY] = dataBase64;
  }
  const dataChanged = Object.keys(data).length > 0;
  if (
    data[DATA_KEY] !== undefined &&
    version &&
    existing.metadata.annotations?.[SOURCE_VERSION_ANNOTATION] !== version
  )
    annotations = { ...annotations, [SOURCE_VERSION_ANNOTATION]: version };
  if (annotations) metadata.annotations = annotations;
  if (Object.keys(metadata).length === 0 && !dataChanged) return undefined;
  return {
    metadata: { ...metadata, resourceVersion: existing.metadata.resourceVersion },
    ...(dataChanged ? { data } : {}),
  };
}

function changed(current: Record<string, string> | undefined, wanted: Record<string, string>) {
  const differing = Object.entries(wanted).filter(([k, v]) => current?.[k] !== v);
  return differing.length > 0 ? Object.fromEntries(differing) : undefined;
}

/** The entries regcred added to a ServiceAccount: entry name → RegistryCredential name. */
export function addedEntries(sa: ServiceAccount): Record<string, string> {
  const text = sa.metadata.annotations?.[PULL_SECRETS_ANNOTATION];
  if (!text) return {};
  try {
    const parsed = JSON.parse(text);
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    return Object.fromEntries(
      Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'),
    );
  } catch {
    return {};
  }
}

/**
 * The merge patch that makes `sa` reference `secretName` for this RegistryCredential exactly when
 * `want` is true, and drops entries it added under any other name, or `undefined` if nothing
 * changes. `imagePullSecrets` is an atomic list, so the patch carries the whole list and the
 * resourceVersion it was computed from (a stale cache fails with a conflict instead of erasing
 * someone's entry).
 */
export function serviceAccountPatch(
  sa: ServiceAccount,
  rc: RegistryCredential,
  secretName: string,
  want: boolean,
) {
  const added = addedEntries(sa);
  const entries = [...(sa.imagePullSecrets ?? [])];
  let dirty = false;
  for (const [name, owner] of Object.entries(added)) {
    if (owner !== rc.metadata.name || (want && name === secretName)) continue;
    const at = entries.map((e) => e.name).lastIndexOf(name);
    if (at >= 0) entries.splice(at, 1);
    delete added[name];
    dirty = true;
  }
  if (want && !entries.some((e) => e.name === secretName)) {
    entries.push({ name: secretName });
    added[secretName] = rc.metadata.name;
    dirty = true;
  } else if (want && added[secretName] !== undefined && added[secretName] !== rc.metadata.name) {
    // Another credential added this entry for the copy this one now holds: it becomes this one's,
    // so the other's cleanup leaves it in place.
    added[secretName] = rc.metadata.name;
    dirty = true;
  }
  if (!dirty) return undefined;
  const names = Object.keys(added).sort();
  const annotation = names.length
    ? JSON.stringify(Object.fromEntries(names.map((n) => [n, added[n]])))
    : null;
  return {
    metadata: {
      resourceVersion: sa.metadata.resourceVersion,
      annotations: { [PULL_SECRETS_ANNOTATION]: annotation },
    },
    imagePullSecrets: entries,
  };
}

/** Whether this RegistryCredential's entry for `secretName` is present on `sa`. */
export function references(sa: ServiceAccount, secretName: string): boolean {
  return (sa.imagePullSecrets ?? []).some((e) => e.name === secretName);
}
