/**
 * regcred's optional admission parts (`config/admission`, the Pod injection policy, and
 * `config/copy-guard`, the copy guard) as objects, for tests and for the benchmark, and the
 * probes that tell what the injection policy does.
 *
 * - `admissionObjects(part)`: the part's manifests, read from its `kustomization.yaml`'s resources
 *   (the same files `kubectl apply -k config/<part>` applies).
 * - `installAdmission(client, part)` creates them (replacing any earlier version) and resolves
 *   before they take effect: kube-apiserver picks policies, bindings and parameters up from its
 *   caches shortly after. `awaitInjection` is the probe that tells when they did.
 * - `dryRunPullSecrets` creates a Pod with `dryRun=All`: nothing is stored, and the answer is the
 *   Pod as admission left it (the ServiceAccount plugin, then the policies).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load, loadAll } from 'js-yaml';
import type { RegistryCredential } from '../../src/api/v1alpha1.ts';
import type { Namespace } from '../../src/regcred/objects.ts';
import { compileSelection, secretNameOf } from '../../src/regcred/plan.ts';
import { ApiError, type KubeClient } from '../../src/runtime/kube.ts';
import { eventually } from './wait.ts';

export const CONFIG = join(import.meta.dirname, '..', '..', 'config');
export type AdmissionPart = 'admission' | 'copy-guard';

export interface AdmissionObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}

const PLURALS: Record<string, string> = {
  MutatingAdmissionPolicy: 'mutatingadmissionpolicies',
  MutatingAdmissionPolicyBinding: 'mutatingadmissionpolicybindings',
  ValidatingAdmissionPolicy: 'validatingadmissionpolicies',
  ValidatingAdmissionPolicyBinding: 'validatingadmissionpolicybindings',
};

/** The objects of `config/<part>`, in its kustomization's order (policies before bindings). */
export function admissionObjects(part: AdmissionPart = 'admission'): AdmissionObject[] {
  const dir = join(CONFIG, part);
  const kustomization = load(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as {
    resources: string[];
  };
  return kustomization.resources.flatMap(
    (file) => loadAll(readFileSync(join(dir, file), 'utf8')).filter(Boolean) as AdmissionObject[],
  );
}

/** The API path of one of these (cluster-scoped) objects. */
export function admissionObjectPath(obj: Pick<AdmissionObject, 'apiVersion' | 'kind' | 'metadata'>): string {
  const plural = PLURALS[obj.kind];
  if (!plural) throw new Error(`not an admission policy kind: ${obj.kind}`);
  return `/apis/${obj.apiVersion}/${plural}/${obj.metadata.name}`;
}

/** Creates the part's objects, replacing those of the same name. Not yet in effect when it resolves. */
export async function installAdmission(client: KubeClient, part: AdmissionPart = 'admission'): Promise<void> {
  for (const obj of admissionObjects(part)) {
    const path = admissionObjectPath(obj);
    await client.delete(path).catch(ignoreNotFound);
    await client.create(path.slice(0, path.lastIndexOf('/')), obj);
  }
}

/** Deletes the part's objects (bindings first). Kube-apiserver stops applying them shortly after. */
export async function removeAdmission(client: KubeClient, part: AdmissionPart = 'admission'): Promise<void> {
  for (const obj of admissionObjects(part).reverse())
    await client.delete(admissionObjectPath(obj)).catch(ignoreNotFound);
}

function ignoreNotFound(err: unknown): void {
  if (!(err instanceof ApiError && err.code === 404)) throw err;
}

export interface ProbePod {
  serviceAccountName?: string;
  /** The Pod's own entries; omitted: the Pod lists none (and gets its ServiceAccount's). */
  imagePullSecrets?: string[];
  annotations?: Record<string, string>;
  /** Required with the mirror Pod annotation; the node need not exist for a dry run. */
  nodeName?: string;
}

/** The Pod a server-side dry-run create in `namespace` returns (nothing is stored). */
export async function dryRunPod(
  client: KubeClient,
  namespace: string,
  pod: ProbePod = {},
): Promise<{
  metadata: { annotations?: Record<string, string> };
  spec: { imagePullSecrets?: { name?: string }[] };
}> {
  return client.request('POST', `/api/v1/namespaces/${namespace}/pods`, {
    query: { dryRun: 'All' },
    body: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'regcred-probe', annotations: pod.annotations },
      spec: {
        serviceAccountName: pod.serviceAccountName,
        nodeName: pod.nodeName,
        automountServiceAccountToken: false,
        imagePullSecrets: pod.imagePullSecrets?.map((name) => ({ name })),
        containers: [{ name: 'probe', image: 'registry.invalid/probe:1' }],
      },
    },
  });
}

/** The `imagePullSecrets` names, in order, of a Pod created (dry run) in `namespace`. */
export async function dryRunPullSecrets(
  client: KubeClient,
  namespace: string,
  pod: ProbePod = {},
): Promise<string[]> {
  const admitted = await dryRunPod(client, namespace, pod);
  return (admitted.spec.imagePullSecrets ?? []).map((e) => e.name ?? '');
}

/**
 * Waits until a Pod created in `namespace` gets `secretName` from the injection policy: the policy,
 * its binding and the RegistryCredential naming `secretName` have reached kube-apiserver's caches.
 * The Pod lists an entry of its own, so the ServiceAccount's entries (regcred's, if the operator
 * runs) are not copied into it and cannot be mistaken for the policy's.
 */
export async function awaitInjection(
  client: KubeClient,
  namespace: string,
  secretName: string,
  { timeoutMs = 30_000, serviceAccountName }: { timeoutMs?: number; serviceAccountName?: string } = {},
): Promise<void> {
  const own = `${secretName}-probe-own`;
  await eventually(
    `a Pod created in ${namespace} gets ${secretName} from the injection policy`,
    async () =>
      (await dryRunPullSecrets(client, namespace, { imagePullSecrets: [own], serviceAccountName })).includes(
        secretName,
      ),
    { timeoutMs, intervalMs: 20 },
  );
}

/**
 * What the injection policy should add to a Pod of ServiceAccount `serviceAccount` in `namespace`,
 * by the operator's own namespace selection (`compileSelection`: names ∪ selector minus the
 * exclude globs, never the source namespace; nothing for a selection the operator refuses) and the
 * policy's documented reading of `serviceAccounts` (by name or "*" only; omitted: "default").
 * Suspended credentials and credentials being deleted add nothing. The secretNames, distinct and
 * sorted (the policy evaluates credentials in no fixed order).
 */
export function expectedInjection(
  credentials: readonly RegistryCredential[],
  namespace: Namespace,
  serviceAccount: string,
): string[] {
  const names = new Set<string>();
  for (const rc of credentials) {
    if (rc.metadata.deletionTimestamp || rc.spec.suspend) continue;
    const compiled = compileSelection(rc);
    if (!compiled.ok || compiled.selection.namespace(namespace) !== 'selected') continue;
    const serviceAccounts = (rc.spec.serviceAccounts ?? { names: ['default'] }).names ?? [];
    if (!serviceAccounts.includes('*') && !serviceAccounts.includes(serviceAccount)) continue;
    names.add(secretNameOf(rc));
  }
  return [...names].sort();
}

/**
 * kube-apiserver's count of the injection policy's evaluations by outcome
 * (`apiserver_mutating_admission_policy_check_total`, by `error_type`: `no_error`,
 * `invalid_error`, `compile_error`, `out_of_budget`), from its /metrics text.
 */
export function policyChecks(metricsText: string, policy = 'regcred-pull-secrets'): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('apiserver_mutating_admission_policy_check_total{')) continue;
    const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (labels.policy !== policy) continue;
    const type = labels.error_type ?? '';
    out[type] = (out[type] ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return out;
}

/** The API error a request that must be refused was refused with (fails if it succeeded). */
export async function rejection(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected the request to be refused');
}
