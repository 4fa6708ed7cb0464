/**
 * What regcred watches, as data: its caches with their indexes, and for each, the pure mapping
 * from an event to the keys that care (as controller-runtime's `Watches` + mapping function).
 *
 * Caches: RegistryCredentials, Namespaces and ServiceAccounts cluster-wide (projected to what
 * regcred reads); Secrets only where regcred may look: those labelled as its copies, and every
 * Secret in each allowed source namespace. Never a cluster-wide cache of all Secrets.
 *
 * Mappings only name keys; every decision is made when the key is reconciled, from the caches.
 */
import { API_VERSION, PLURAL, type RegistryCredential } from '../api/v1alpha1.ts';
import type { Watch } from '../runtime/manager.ts';
import type { Enqueue } from '../runtime/reconcile.ts';
import type { StoreEvent } from '../runtime/reflector.ts';
import { Store } from '../runtime/store.ts';
import type { Caches } from './executor.ts';
import { credentialKey, type Key, namespaceKey, STATUS_DELAY_MS, statusKey } from './keys.ts';
import type { Compiled } from './namespace-plan.ts';
import {
  COPY_SELECTOR,
  CREDENTIAL_LABEL,
  type Namespace,
  projectNamespace,
  projectRegistryCredential,
  projectSecret,
  projectServiceAccount,
  type Secret,
  type ServiceAccount,
} from './objects.ts';
import { addedEntries, secretNameOf, sourceOf } from './plan.ts';

export function createCaches(): Caches {
  return {
    credentials: new Store<RegistryCredential>({ source: (rc) => [refKey(sourceOf(rc))] }),
    namespaces: new Store<Namespace>(),
    serviceAccounts: new Store<ServiceAccount>({ namespace: (sa) => [sa.metadata.namespace!] }),
    copies: new Store<Secret>({
      namespace: (s) => [s.metadata.namespace!],
      credential: (s) => (s.metadata.labels?.[CREDENTIAL_LABEL] ? [s.metadata.labels[CREDENTIAL_LABEL]] : []),
    }),
  };
}

/** What the mappings read: the caches and the (memoised) compiled selection of a credential. */
export interface View {
  caches: Caches;
  selectionOf: (rc: RegistryCredential) => Compiled;
}

const later = (rc: string): Enqueue<Key> => ({ key: statusKey(rc), afterMs: STATUS_DELAY_MS });

/** A spec or lifecycle change needs the credential key; anything else (its status) only status. */
export function credentialKeys(e: StoreEvent<RegistryCredential>): Enqueue<Key>[] {
  const name = e.object.metadata.name;
  if (e.type === 'updated') {
    const [a, b] = [e.old.metadata, e.object.metadata];
    const specOrLifecycle =
      a.generation !== b.generation ||
      a.deletionTimestamp !== b.deletionTimestamp ||
      a.uid !== b.uid ||
      (a.finalizers ?? []).join() !== (b.finalizers ?? []).join();
    if (!specOrLifecycle) return [later(name)];
  }
  return [{ key: credentialKey(name) }];
}

/**
 * Credentials that select the namespace (or see it terminating), selected it before this change
 * (what was recorded for it, a conflict say, must leave status), or hold a copy there.
 */
export function namespaceKeys(view: View, e: StoreEvent<Namespace>): Enqueue<Key>[] {
  const ns = e.object;
  const copiesHere = view.caches.copies.byIndex('namespace', ns.metadata.name);
  const out: Enqueue<Key>[] = [];
  for (const rc of view.caches.credentials.list()) {
    const name = rc.metadata.name;
    const selection = view.selectionOf(rc);
    const selects = (n: Namespace) => selection.ok && selection.selection.namespace(n) !== 'notSelected';
    const concerned =
      selects(ns) ||
      (e.type === 'updated' && selects(e.old)) ||
      copiesHere.some((c) => c.metadata.labels?.[CREDENTIAL_LABEL] === name);
    if (concerned) out.push({ key: namespaceKey(name, ns.metadata.name) }, later(name));
  }
  return out;
}

/** Credentials that select the ServiceAccount's namespace, or recorded an entry on it (before or after). */
export function serviceAccountKeys(view: View, e: StoreEvent<ServiceAccount>): Enqueue<Key>[] {
  const namespace = e.object.metadata.namespace!;
  const ns = view.caches.namespaces.get(namespace);
  const involved = new Set([
    ...Object.values(addedEntries(e.object)),
    ...(e.type === 'updated' ? Object.values(addedEntries(e.old)) : []),
  ]);
  const out: Enqueue<Key>[] = [];
  for (const rc of view.caches.credentials.list()) {
    const selection = view.selectionOf(rc);
    const selects = ns !== undefined && selection.ok && selection.selection.namespace(ns) === 'selected';
    if (selects || involved.has(rc.metadata.name))
      out.push({ key: namespaceKey(rc.metadata.name, namespace) });
  }
  return out;
}

/** Credentials whose label the copy carries, or whose copy name it has. */
export function copyKeys(view: View, e: StoreEvent<Secret>): Enqueue<Key>[] {
  const secret = e.object;
  const labelled = secret.metadata.labels?.[CREDENTIAL_LABEL];
  const out: Enqueue<Key>[] = [];
  for (const rc of view.caches.credentials.list()) {
    if (rc.metadata.name === labelled || secretNameOf(rc) === secret.metadata.name)
      out.push({ key: namespaceKey(rc.metadata.name, secret.metadata.namespace!) });
  }
  return out;
}

/** Credentials whose source this Secret is. */
export function sourceKeys(view: View, e: StoreEvent<Secret>): Enqueue<Key>[] {
  const ref = refKey(e.object.metadata as { namespace: string; name: string });
  return view.caches.credentials
    .byIndex('source', ref)
    .map((rc) => ({ key: credentialKey(rc.metadata.name) }));
}

/** Every watch regcred needs, given its caches and one Store per allowed source namespace. */
export function watches(view: View, sourceStores: ReadonlyMap<string, Store<Secret>>): Watch<never, Key>[] {
  const { caches } = view;
  const list: Watch<never, Key>[] = [
    watch({
      name: 'registrycredentials',
      path: `/apis/${API_VERSION}/${PLURAL}`,
      store: caches.credentials,
      transform: projectRegistryCredential,
      keys: credentialKeys,
    }),
    watch({
      name: 'namespaces',
      path: '/api/v1/namespaces',
      store: caches.namespaces,
      transform: projectNamespace,
      keys: (e) => namespaceKeys(view, e),
    }),
    watch({
      name: 'serviceaccounts',
      path: '/api/v1/serviceaccounts',
      store: caches.serviceAccounts,
      transform: projectServiceAccount,
      keys: (e) => serviceAccountKeys(view, e),
    }),
    watch({
      name: 'copies',
      path: '/api/v1/secrets',
      store: caches.copies,
      transform: projectSecret,
      labelSelector: COPY_SELECTOR,
      keys: (e) => copyKeys(view, e),
    }),
  ];
  for (const [ns, store] of sourceStores) {
    list.push(
      watch({
        name: `sources/${ns}`,
        path: `/api/v1/namespaces/${ns}/secrets`,
        store,
        transform: projectSecret,
        keys: (e) => sourceKeys(view, e),
      }),
    );
  }
  return list;
}

/** Erases a watch's object type, so watches of different kinds fit in one list. */
function watch<T extends { metadata: { name: string } }>(w: Watch<T, Key>): Watch<never, Key> {
  return w as unknown as Watch<never, Key>;
}

function refKey(ref: { namespace?: string; name: string }): string {
  return `${ref.namespace}/${ref.name}`;
}
