/**
 * The floor: an ideal client that makes exactly the writes the end state needs, with concurrency
 * 32, and nothing else (no cache, no status, no checks). What it takes on this control plane is the
 * best any operator could do here, in the same run.
 *
 * Its objects are regcred's, byte for byte in shape: copies with the same labels, annotations and
 * an ownerReference (to a cluster-scoped object: each owned object costs the garbage collector the
 * same work), ServiceAccount patches with the same annotation. Only the label that regcred's cache
 * selects on differs, so regcred never sees the floor's copies.
 */
import type { KubeClient } from '../../src/runtime/kube.ts';
import { Limiter } from '../../src/runtime/limiter.ts';
import { FLOOR_LABEL } from './observer.ts';

export const FLOOR_CONCURRENCY = 32;

/** Runs `task` over `items` with `concurrency` at once. */
export async function parallel<T>(
  items: readonly T[],
  concurrency: number,
  task: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await task(items[next++]!);
    }),
  );
}

/** The cluster-scoped object the floor's copies name as owner (created by `floorOwner`). */
export interface Owner {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

export async function floorOwner(client: KubeClient): Promise<Owner> {
  const role = await client.create<{ metadata: { name: string; uid: string } }>(
    '/apis/rbac.authorization.k8s.io/v1/clusterroles',
    { metadata: { name: 'bench-floor-owner' }, rules: [] },
  );
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    name: role.metadata.name,
    uid: role.metadata.uid,
  };
}

function copy(namespace: string, name: string, dataBase64: string, owner: Owner) {
  return {
    metadata: {
      name,
      namespace,
      labels: {
        'app.kubernetes.io/managed-by': 'bench-floor',
        'regcred.dev/credential': name,
        [FLOOR_LABEL]: 'true',
      },
      annotations: { 'regcred.dev/credential': name, 'regcred.dev/source': `regcred-system/${name}` },
      ownerReferences: [{ ...owner, controller: true }],
    },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': dataBase64 },
  };
}

function entryPatch(name: string) {
  return {
    // The size of regcred's attribution annotation, under a key regcred does not read.
    metadata: { annotations: { 'bench.regcred.dev/image-pull-secrets': JSON.stringify({ [name]: name }) } },
    imagePullSecrets: [{ name }],
  };
}

/**
 * Per namespace: the copy, then each ServiceAccount's entry (a copy exists before it is
 * referenced), as regcred orders them; at most 32 requests in flight in all.
 */
export async function floorFanOut(
  client: KubeClient,
  namespaces: readonly string[],
  accounts: readonly string[],
  name: string,
  dataBase64: string,
  owner: Owner,
): Promise<void> {
  const inFlight = new Limiter(FLOOR_CONCURRENCY);
  await parallel(namespaces, FLOOR_CONCURRENCY, async (ns) => {
    await inFlight.run(() =>
      client.create(`/api/v1/namespaces/${ns}/secrets`, copy(ns, name, dataBase64, owner)),
    );
    await Promise.all(
      accounts.map((sa) =>
        inFlight.run(() =>
          client.mergePatch(`/api/v1/namespaces/${ns}/serviceaccounts/${sa}`, entryPatch(name)),
        ),
      ),
    );
  });
}

export async function floorRotate(
  client: KubeClient,
  namespaces: readonly string[],
  name: string,
  dataBase64: string,
): Promise<void> {
  await parallel(namespaces, FLOOR_CONCURRENCY, (ns) =>
    client.mergePatch(`/api/v1/namespaces/${ns}/secrets/${name}`, {
      data: { '.dockerconfigjson': dataBase64 },
    }),
  );
}

/**
 * An ideal reactive client for new namespaces: on a namespace labelled `floor-churn` it creates the
 * copy; on its `default` ServiceAccount appearing it patches it (once the copy exists). Watches of
 * its own, as any controller has.
 */
export async function floorReactor(
  client: KubeClient,
  name: string,
  dataBase64: string,
  owner: Owner,
  signal: AbortSignal,
): Promise<void> {
  const copies = new Map<string, Promise<unknown>>();
  const ensureCopy = (ns: string) => {
    let p = copies.get(ns);
    if (!p) {
      p = client
        .create(`/api/v1/namespaces/${ns}/secrets`, copy(ns, name, dataBase64, owner))
        .catch(() => undefined);
      copies.set(ns, p);
    }
    return p;
  };
  const watch = (
    path: string,
    query: Record<string, string | boolean>,
    onAdded: (obj: { metadata: { name: string; namespace?: string } }) => void,
  ) =>
    client.watch(
      path,
      query,
      (type, obj) => {
        if (type === 'ADDED') onAdded(obj as { metadata: { name: string; namespace?: string } });
      },
      { signal, inactivityTimeoutMs: 3_600_000 },
    );
  const now = await client.get<{ metadata: { resourceVersion: string } }>('/api/v1/namespaces', { limit: 1 });
  const rv = now.metadata.resourceVersion;
  await Promise.all([
    watch(
      '/api/v1/namespaces',
      { labelSelector: 'bench.regcred.dev/churn=floor', resourceVersion: rv },
      (ns) => void ensureCopy(ns.metadata.name),
    ),
    watch(
      '/api/v1/serviceaccounts',
      { fieldSelector: 'metadata.name=default', resourceVersion: rv },
      (sa) => {
        const ns = sa.metadata.namespace!;
        if (!ns.startsWith('fc-')) return;
        void ensureCopy(ns).then(() =>
          client.mergePatch(`/api/v1/namespaces/${ns}/serviceaccounts/default`, entryPatch(name)),
        );
      },
    ),
  ]);
}
