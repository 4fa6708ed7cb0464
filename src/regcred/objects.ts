/**
 * The Kubernetes objects regcred caches, projected to the fields it reads. Projection keeps the
 * caches small (managedFields, unrelated annotations and the like are dropped) and is the only
 * place that trusts the shape of API JSON.
 */
import type { ObjectMeta, OwnerReference, RegistryCredential } from '../api/v1alpha1.ts';

/** Label on every copy: the one label regcred's Secret watch selects on. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'regcred';
/** Label on every copy naming its RegistryCredential (for mapping events; not proof of ownership). */
export const CREDENTIAL_LABEL = 'regcred.dev/credential';
/** Annotations on every copy, for humans: which RegistryCredential put it there, from which source. */
export const CREDENTIAL_ANNOTATION = 'regcred.dev/credential';
export const SOURCE_ANNOTATION = 'regcred.dev/source';
/**
 * On a copy: the source resourceVersion whose credential regcred last wrote into it. A copy whose
 * data differs from the source although it records the current version was changed by someone
 * else (drift); one that records an older version follows a rotation.
 */
export const SOURCE_VERSION_ANNOTATION = 'regcred.dev/source-resource-version';
/**
 * On a ServiceAccount: a JSON object `{"<imagePullSecrets entry name>": "<RegistryCredential>"}`
 * recording the entries regcred added, so that it removes only those.
 */
export const PULL_SECRETS_ANNOTATION = 'regcred.dev/image-pull-secrets';
export const FINALIZER = 'regcred.dev/cleanup';
export const COPY_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;

const OUR_ANNOTATIONS = new Set([
  CREDENTIAL_ANNOTATION,
  SOURCE_ANNOTATION,
  SOURCE_VERSION_ANNOTATION,
  PULL_SECRETS_ANNOTATION,
]);

export interface Namespace {
  metadata: Pick<ObjectMeta, 'name' | 'uid' | 'resourceVersion' | 'labels' | 'deletionTimestamp'>;
  status?: { phase?: string };
}

export interface ServiceAccount {
  metadata: Pick<ObjectMeta, 'name' | 'namespace' | 'uid' | 'resourceVersion' | 'labels' | 'annotations'>;
  imagePullSecrets?: { name?: string }[];
}

export interface Secret {
  metadata: Pick<
    ObjectMeta,
    | 'name'
    | 'namespace'
    | 'uid'
    | 'resourceVersion'
    | 'labels'
    | 'annotations'
    | 'ownerReferences'
    | 'creationTimestamp'
  >;
  type?: string;
  data?: Record<string, string>;
}

type Raw = { metadata?: Record<string, unknown> } & Record<string, unknown>;

function meta(raw: Raw): Record<string, unknown> {
  return raw.metadata ?? {};
}

function ours(annotations: unknown): Record<string, string> | undefined {
  if (!annotations || typeof annotations !== 'object') return undefined;
  const kept = Object.entries(annotations as Record<string, string>).filter(([k]) => OUR_ANNOTATIONS.has(k));
  return kept.length > 0 ? Object.fromEntries(kept) : undefined;
}

export function projectNamespace(input: unknown): Namespace {
  const raw = input as Raw;
  const m = meta(raw);
  return {
    metadata: {
      name: m.name as string,
      uid: m.uid as string,
      resourceVersion: m.resourceVersion as string,
      labels: m.labels as Record<string, string> | undefined,
      deletionTimestamp: m.deletionTimestamp as string | undefined,
    },
    status: { phase: (raw.status as { phase?: string } | undefined)?.phase },
  };
}

export function projectServiceAccount(input: unknown): ServiceAccount {
  const raw = input as Raw;
  const m = meta(raw);
  return {
    metadata: {
      name: m.name as string,
      namespace: m.namespace as string,
      uid: m.uid as string,
      resourceVersion: m.resourceVersion as string,
      labels: m.labels as Record<string, string> | undefined,
      annotations: ours(m.annotations),
    },
    imagePullSecrets: raw.imagePullSecrets as { name?: string }[] | undefined,
  };
}

/** Copies keep only regcred's annotations; sources keep none (they are never written). */
export function projectSecret(input: unknown): Secret {
  const raw = input as Raw;
  const m = meta(raw);
  return {
    metadata: {
      name: m.name as string,
      namespace: m.namespace as string,
      uid: m.uid as string,
      resourceVersion: m.resourceVersion as string,
      creationTimestamp: m.creationTimestamp as string | undefined,
      labels: m.labels as Record<string, string> | undefined,
      annotations: ours(m.annotations),
      ownerReferences: m.ownerReferences as OwnerReference[] | undefined,
    },
    type: raw.type as string | undefined,
    data: raw.data as Record<string, string> | undefined,
  };
}

export function projectRegistryCredential(input: unknown): RegistryCredential {
  const raw = input as RegistryCredential & { metadata: { managedFields?: unknown } };
  const { managedFields: _dropped, ...metadata } = raw.metadata;
  return { ...raw, metadata };
}

export function isTerminating(ns: Namespace): boolean {
  return Boolean(ns.metadata.deletionTimestamp) || ns.status?.phase === 'Terminating';
}
