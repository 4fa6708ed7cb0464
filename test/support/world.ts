/**
 * Building blocks for scenario tests against the shared control plane: regcred installed once from
 * config/default, operators running in this process as regcred's own ServiceAccount, and helpers that create and read the world
 * through the API, exactly as a user would. Every test gets names of its own, so tests never see
 * each other's objects.
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import winston from 'winston';
import type { ClientConfig } from '../../controlplane/index.ts';
import { API_VERSION, PLURAL, type RegistryCredential } from '../../src/api/v1alpha1.ts';
import { Operator, type OperatorOptions } from '../../src/operator.ts';
import { ApiError, KubeClient } from '../../src/runtime/kube.ts';
import { apiserverRequestCounts } from './apiserver-metrics.ts';
import { cluster } from './cluster.ts';
import { b64, dockerConfig } from './credential-cases.ts';
import { eventually } from './wait.ts';

export { countDelta } from './apiserver-metrics.ts';

const run = promisify(execFile);
export const SOURCE_NAMESPACE = 'regcred-system';
export const RC_PATH = `/apis/${API_VERSION}/${PLURAL}`;
export const LOG_DIR = join(tmpdir(), 'regcred-test-logs');

let counter = 0;
/** A short name unique to this test run, e.g. `t1a2b-7`. */
export function unique(prefix = 't'): string {
  return `${prefix}-${process.pid.toString(36)}${(counter++).toString(36)}`;
}

export function admin(): KubeClient {
  return new KubeClient(cluster().admin.kubeConfig);
}

export { b64, dockerConfig };

export const CONFIG_DEFAULT = join(import.meta.dirname, '..', '..', 'config', 'default');
/** The ServiceAccount config/default creates for the operator. */
export const OPERATOR_SERVICE_ACCOUNT = { namespace: 'regcred-system', name: 'regcred' };

export async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run(cluster().binaries.kubectl, ['--kubeconfig', cluster().admin.path, ...args]);
  return stdout;
}

let installed: Promise<void> | undefined;
/**
 * Installs regcred as users do, once per run: `kubectl apply -k config/default` (CRD, namespace,
 * ServiceAccount, RBAC, Deployment: nothing runs the Deployment here, there is no kubelet), and
 * waits until the API serves RegistryCredentials.
 */
export function installRegcred(): Promise<void> {
  installed ??= (async () => {
    await kubectl('apply', '-k', CONFIG_DEFAULT);
    await eventually('the RegistryCredential API is served', async () => {
      await admin().get(RC_PATH);
      return true;
    });
  })();
  return installed;
}

let operatorIdentity: Promise<ClientConfig> | undefined;
/** A kubeconfig for the operator's own ServiceAccount (a TokenRequest token): tests run it under its RBAC. */
export function operatorConfig(): Promise<ClientConfig> {
  operatorIdentity ??= installRegcred().then(() =>
    cluster().serviceAccountConfig(
      OPERATOR_SERVICE_ACCOUNT.namespace,
      OPERATOR_SERVICE_ACCOUNT.name,
      4 * 3600,
    ),
  );
  return operatorIdentity;
}

export function ignoreExists(err: unknown): void {
  if (!(err instanceof ApiError && err.code === 409)) throw err;
}

export function ignoreNotFound(err: unknown): void {
  if (!(err instanceof ApiError && err.code === 404)) throw err;
}

export interface RunningOperator {
  operator: Operator;
  client: KubeClient;
  logPath: string;
  /** Requests this operator made, as `METHOD path code`. */
  requests: string[];
  /** Requests (not watches) this operator has sent and not yet had an answer to. */
  outstanding(): number;
  stop(): Promise<void>;
}

/**
 * Starts an operator in this process, as the operator's own ServiceAccount (so every scenario also
 * proves the shipped RBAC is enough) unless another client config is given.
 */
export async function startOperator(
  options: Partial<Omit<OperatorOptions, 'client' | 'logger'>> & { as?: ClientConfig; name?: string } = {},
): Promise<RunningOperator> {
  mkdirSync(LOG_DIR, { recursive: true });
  const logPath = join(LOG_DIR, `${options.name ?? unique('operator')}.log`);
  const logger = winston.createLogger({
    level: 'debug',
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.File({ filename: logPath })],
  });
  const client = new KubeClient((options.as ?? (await operatorConfig())).kubeConfig);
  const requests: string[] = [];
  client.onRequest((method, path, code) => requests.push(`${method} ${path} ${code}`));
  // Every request but a watch goes through `request`; Events, for one, are posted without being
  // awaited by anything the queue knows of.
  let outstanding = 0;
  const send = client.request.bind(client);
  client.request = async <T>(...args: Parameters<KubeClient['request']>): Promise<T> => {
    outstanding++;
    try {
      return await send<T>(...args);
    } finally {
      outstanding--;
    }
  };
  const operator = new Operator({
    client,
    logger,
    sourceNamespaces: options.sourceNamespaces ?? [SOURCE_NAMESPACE],
    concurrency: options.concurrency ?? 16,
    resyncPeriodMs: options.resyncPeriodMs ?? 0,
    ...(options.stallAfterMs === undefined ? {} : { stallAfterMs: options.stallAfterMs }),
  });
  await operator.start();
  return {
    operator,
    client,
    logPath,
    requests,
    outstanding: () => outstanding,
    async stop() {
      await operator.stop();
      await new Promise<void>((resolve) => {
        logger.on('finish', () => resolve());
        logger.end();
      });
    },
  };
}

/**
 * Waits until an in-process operator has nothing queued, in flight or scheduled (delayed status
 * keys too), and no request outstanding (an Event it posted, say). From then on it does nothing
 * until a watch brings it a change.
 */
export async function operatorIdle(op: RunningOperator): Promise<void> {
  const queue = op.operator.queue;
  await eventually(
    'the operator is idle',
    () => queue.length === 0 && queue.inFlight === 0 && queue.waiting === 0 && op.outstanding() === 0,
  );
}

/**
 * Waits until an in-process operator's cache holds this version of an object or a later one
 * (resourceVersions of the one etcd here increase with every write), then until it is idle.
 */
export async function operatorSaw(
  op: RunningOperator,
  kind: 'namespaces' | 'serviceAccounts' | 'copies',
  key: string,
  rv: string,
): Promise<void> {
  await eventually(
    `the operator's cache holds ${kind} ${key}@${rv} or later`,
    () => Number(op.operator.caches[kind].get(key)?.metadata.resourceVersion) >= Number(rv),
  );
  await operatorIdle(op);
}

// --- the world ------------------------------------------------------------------------------------

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[];
  finalizers?: string[];
  deletionTimestamp?: string;
}
export interface SecretJson {
  metadata: ObjectMeta;
  type?: string;
  data?: Record<string, string>;
}
export interface ServiceAccountJson {
  metadata: ObjectMeta;
  imagePullSecrets?: { name: string }[];
}

/** Creates a namespace and waits for its `default` ServiceAccount (made by the controller-manager). */
export async function createNamespace(name: string, labels: Record<string, string> = {}): Promise<void> {
  const client = admin();
  await client.create('/api/v1/namespaces', { metadata: { name, labels } });
  await eventually(`${name}/default exists`, () =>
    client.get(`/api/v1/namespaces/${name}/serviceaccounts/default`),
  );
}

export async function createServiceAccount(
  namespace: string,
  name: string,
  options: { labels?: Record<string, string>; imagePullSecrets?: string[] } = {},
): Promise<void> {
  await admin().create(`/api/v1/namespaces/${namespace}/serviceaccounts`, {
    metadata: { name, labels: options.labels },
    imagePullSecrets: options.imagePullSecrets?.map((n) => ({ name: n })),
  });
}

/** A dockerconfigjson document for one registry. */

export async function createSource(
  name: string,
  options: {
    type?: string;
    data?: Record<string, string>;
    labels?: Record<string, string>;
    namespace?: string;
  } = {},
): Promise<SecretJson> {
  const type = options.type ?? 'kubernetes.io/dockerconfigjson';
  const data = options.data ?? {
    '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', `pw-${name}`)),
  };
  return admin().create(`/api/v1/namespaces/${options.namespace ?? SOURCE_NAMESPACE}/secrets`, {
    metadata: { name, labels: options.labels },
    type,
    data,
  });
}

export async function updateSource(
  name: string,
  data: Record<string, string>,
  namespace = SOURCE_NAMESPACE,
): Promise<SecretJson> {
  return admin().mergePatch(`/api/v1/namespaces/${namespace}/secrets/${name}`, { data });
}

export interface CredentialSpec {
  source?: { secretRef: { namespace: string; name: string } };
  secretName?: string;
  namespaces?: Record<string, unknown>;
  serviceAccounts?: Record<string, unknown>;
  conflictPolicy?: string;
  suspend?: boolean;
}

export async function createCredential(name: string, spec: CredentialSpec): Promise<RegistryCredential> {
  return admin().create(RC_PATH, {
    apiVersion: API_VERSION,
    kind: 'RegistryCredential',
    metadata: { name },
    spec,
  });
}

export async function patchCredentialSpec(
  name: string,
  spec: Record<string, unknown>,
): Promise<RegistryCredential> {
  return admin().mergePatch(`${RC_PATH}/${name}`, { spec });
}

export async function getCredential(name: string): Promise<RegistryCredential> {
  return admin().get(`${RC_PATH}/${name}`);
}

export async function deleteCredential(name: string): Promise<void> {
  await admin().delete(`${RC_PATH}/${name}`).catch(ignoreNotFound);
}

export async function getSecret(namespace: string, name: string): Promise<SecretJson | undefined> {
  return admin()
    .get<SecretJson>(`/api/v1/namespaces/${namespace}/secrets/${name}`)
    .catch((err) => {
      ignoreNotFound(err);
      return undefined;
    });
}

export async function getServiceAccount(namespace: string, name = 'default'): Promise<ServiceAccountJson> {
  return admin().get(`/api/v1/namespaces/${namespace}/serviceaccounts/${name}`);
}

export async function pullSecretNames(namespace: string, sa = 'default'): Promise<string[]> {
  return ((await getServiceAccount(namespace, sa)).imagePullSecrets ?? []).map((e) => e.name);
}

export function condition(rc: RegistryCredential, type: string) {
  return rc.status?.conditions?.find((c) => c.type === type);
}

/** Waits until the credential's status is current and Ready has `status` (and `reason`, if given). */
export async function waitForReady(
  name: string,
  status: 'True' | 'False' = 'True',
  reason?: string,
  timeoutMs = 30_000,
): Promise<RegistryCredential> {
  return eventually(
    `${name} is Ready=${status}${reason ? ` (${reason})` : ''}`,
    async () => {
      const rc = await getCredential(name);
      const ready = condition(rc, 'Ready');
      const current = rc.status?.observedGeneration === rc.metadata.generation;
      if (!current || ready?.status !== status || (reason && ready.reason !== reason)) {
        throw new Error(
          `Ready=${ready?.status}/${ready?.reason}: ${ready?.message}; observedGeneration ${rc.status?.observedGeneration}`,
        );
      }
      return rc;
    },
    { timeoutMs },
  );
}

/** Waits until the credential's status satisfies `check` (status writes are coalesced, ≤ 1 s late). */
export async function waitForStatus(
  name: string,
  description: string,
  check: (status: NonNullable<RegistryCredential['status']>) => boolean,
  timeoutMs = 30_000,
): Promise<RegistryCredential> {
  return eventually(
    `${name}: ${description}`,
    async () => {
      const rc = await getCredential(name);
      if (!rc.status || !check(rc.status)) throw new Error(`status is ${JSON.stringify(rc.status)}`);
      return rc;
    },
    { timeoutMs },
  );
}

export async function waitForGone(path: string, timeoutMs = 30_000): Promise<void> {
  await eventually(
    `${path} is gone`,
    async () => {
      try {
        await admin().get(path);
        return false;
      } catch (err) {
        ignoreNotFound(err);
        return true;
      }
    },
    { timeoutMs },
  );
}

/** A source, tenant namespaces and a RegistryCredential copying the one into the others: see `tenantWorld`. */
export interface TenantWorld {
  source: SecretJson;
  namespaces: string[];
  /** As Ready reported it, or as created when `ready: false`. */
  credential: RegistryCredential;
}

/**
 * The world most scenarios start from, built in this order: the source Secret `name` (in
 * SOURCE_NAMESPACE; `source` passes createSource's options), the tenant `namespaces` (default
 * `[name]`, each with its default ServiceAccount), then the RegistryCredential `name` copying the
 * source into them, under the copy name `name` unless `spec` says otherwise.
 *
 * `select: 'names'` (the default) lists the namespaces in `spec.namespaces.names`; `'label'` gives
 * each the label `tenant: <name>` and selects on it. `spec` is merged over that spec, key by key.
 * Waits until the credential is Ready=True unless `ready: false` (for a scenario that awaits
 * another condition, or that starts its operator afterwards).
 *
 * A scenario whose point is what exists before the credential (a foreign Secret, someone else's
 * ServiceAccount entries) or the order things appear in builds its world itself.
 */
export async function tenantWorld(
  name: string,
  options: {
    namespaces?: string[];
    select?: 'names' | 'label';
    spec?: Omit<CredentialSpec, 'source'>;
    source?: Parameters<typeof createSource>[1];
    ready?: boolean;
  } = {},
): Promise<TenantWorld> {
  const { namespaces = [name], select = 'names', ready = true } = options;
  const source = await createSource(name, options.source);
  for (const ns of namespaces) await createNamespace(ns, select === 'label' ? { tenant: name } : {});
  const created = await createCredential(name, {
    source: { secretRef: { namespace: SOURCE_NAMESPACE, name } },
    namespaces: select === 'label' ? { selector: { matchLabels: { tenant: name } } } : { names: namespaces },
    ...options.spec,
  });
  return { source, namespaces, credential: ready ? await waitForReady(name) : created };
}

/** Events recorded about an object (core/v1), oldest first. */
export async function eventsAbout(
  namespace: string,
  name: string,
): Promise<{ type: string; reason: string; message: string }[]> {
  const list = await admin().get<{
    items: { type: string; reason: string; message: string; involvedObject: { name: string } }[];
  }>(`/api/v1/namespaces/${namespace}/events`, { fieldSelector: `involvedObject.name=${name}` });
  return list.items;
}

/**
 * Counts kube-apiserver's requests by verb and resource from its own metrics
 * (`apiserver_request_total`), as the benchmark does.
 */
export async function apiRequestCounts(): Promise<Map<string, number>> {
  return apiserverRequestCounts((await cluster().get('/metrics')).body);
}

/**
 * A ValidatingAdmissionPolicy (and its binding, both named `name`) that denies `operation` on
 * Secrets in namespaces labelled `label`, with `message`. Resolves with its removal. Admission
 * policies take effect asynchronously: probe before relying on one.
 */
export async function denySecrets(
  name: string,
  operation: 'CREATE' | 'DELETE',
  label: Record<string, string>,
  message: string,
): Promise<() => Promise<void>> {
  const client = admin();
  const policies = '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies';
  const bindings = '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings';
  await client.create(policies, {
    metadata: { name },
    spec: {
      failurePolicy: 'Fail',
      matchConstraints: {
        resourceRules: [
          { apiGroups: [''], apiVersions: ['v1'], operations: [operation], resources: ['secrets'] },
        ],
      },
      validations: [{ expression: 'false', message }],
    },
  });
  await client.create(bindings, {
    metadata: { name },
    spec: {
      policyName: name,
      validationActions: ['Deny'],
      matchResources: { namespaceSelector: { matchLabels: label } },
    },
  });
  return async () => {
    await client.delete(`${bindings}/${name}`);
    await client.delete(`${policies}/${name}`);
  };
}
