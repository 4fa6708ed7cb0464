/**
 * `npm run local`: regcred on a real local Kubernetes cluster, for trying it out.
 *
 * Starts the control plane and, where the machine allows, the local node and its private registry
 * (building what is missing the first time), installs the CRD, starts the operator from its
 * production entry point (`src/main.ts`, as a separate process, as the image runs it) and applies
 * the samples in `config/samples/`. With the node, the sample source Secret holds a real login to
 * the private registry, a sample private image is pushed there, and a Deployment in a tenant
 * namespace runs it, pulled through regcred's copy alone. It prints the live state and how to use
 * the cluster, and stays up until Ctrl-C, which stops everything and leaves nothing behind.
 * Importing it starts nothing: tests use its samples and the lines it prints.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadAll } from 'js-yaml';
import {
  ControlPlane,
  ControlPlaneError,
  nodePreflight,
  stopOnInterrupt,
  streamProgress,
} from '../controlplane/index.ts';
import { customResourceDefinition } from '../src/api/crd.ts';
import { ApiError, KubeClient } from '../src/runtime/kube.ts';
import { flags } from './args.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SAMPLES = join(ROOT, 'config', 'samples');
const run = promisify(execFile);
const progress = streamProgress(process.stderr, '[local] ');

/** The sample tenant workload: a Deployment in this namespace, running the private image. */
export const SAMPLE_APP = { namespace: 'acme-web', name: 'hello' } as const;
/** The sample private image's repository and tag in the local registry. */
export const SAMPLE_IMAGE = { repository: 'acme/hello', tag: '1' } as const;
/** The registry user whose login the sample source Secret holds. */
export const SAMPLE_REGISTRY_USER = 'acme-bot';

export const USAGE = `npm run local [-- --no-node]

Runs regcred on a local Kubernetes cluster until Ctrl-C: a control plane and, when this machine can
run it (Linux, root, cgroups), a real node with a private registry, where a sample tenant Deployment
pulls a private image through regcred's copy of the credential.

  --no-node   the control plane alone (no kubelet, no registry), as on machines that cannot run a node
  -h, --help  this text
`;

export interface SampleObject {
  kind: string;
  apiVersion: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/** The objects of the sample files in `config/samples/`, namespaces first. */
export function sampleObjects(): SampleObject[] {
  return readdirSync(SAMPLES)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) => loadAll(readFileSync(join(SAMPLES, f), 'utf8')) as SampleObject[])
    .filter(Boolean)
    .sort((a, b) => Number(b.kind === 'Namespace') - Number(a.kind === 'Namespace'));
}

/**
 * The samples for a cluster with the local node: the source Secret holds `dockerConfigJson` (a
 * real login to the private registry) instead of the sample's fake one.
 */
export function nodeSampleObjects(dockerConfigJson: string): SampleObject[] {
  return sampleObjects().map((obj) =>
    obj.kind === 'Secret' && obj.type === 'kubernetes.io/dockerconfigjson'
      ? { ...obj, stringData: { '.dockerconfigjson': dockerConfigJson } }
      : obj,
  );
}

/** The sample tenant Deployment on the private image (`Always`: every start asks the registry). */
export function sampleDeployment(image: string): SampleObject {
  const labels = { app: SAMPLE_APP.name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { ...SAMPLE_APP, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: 'hello',
              image,
              imagePullPolicy: 'Always',
              args: ['sleep', '86400'],
            },
          ],
        },
      },
    },
  };
}

/** The API path of an object (`collection`: without its name). */
export function objectPath(obj: SampleObject, collection = false): string {
  const plural = `${obj.kind.toLowerCase()}s`.replace(/ys$/, 'ies');
  const base = obj.apiVersion.includes('/') ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
  const path = obj.metadata.namespace
    ? `${base}/namespaces/${obj.metadata.namespace}/${plural}`
    : `${base}/${plural}`;
  return collection ? path : `${path}/${obj.metadata.name}`;
}

/** Creates each object, in order; objects that exist are left alone. Returns those it created. */
export async function applySamples(
  client: KubeClient,
  objects: SampleObject[] = sampleObjects(),
): Promise<SampleObject[]> {
  const created: SampleObject[] = [];
  for (const obj of objects) {
    try {
      await client.create(objectPath(obj, true), obj);
      created.push(obj);
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 409)) throw err;
    }
  }
  return created;
}

/**
 * What `npm run local` tells the user to paste into another terminal: the environment for the
 * cluster's kubectl, then commands to try on the samples; with the node (`image`: the sample
 * private image), also how to try a new tenant and what a namespace that is not one meets.
 */
export function pasteLines(plane: {
  kubeconfig: string;
  kubectl: string;
  kubectlOrigin: string;
  image?: string;
}): string[] {
  const kubectlDir = dirname(plane.kubectl);
  const origin = plane.kubectlOrigin === kubectlDir ? 'built for regcred' : `from ${plane.kubectlOrigin}`;
  const lines = [
    `export KUBECONFIG=${plane.kubeconfig}`,
    `export PATH=${kubectlDir}:$PATH   # kubectl ${origin}`,
    'kubectl get regcred',
    'kubectl describe regcred acme-registry',
    'kubectl get secret,serviceaccount -n acme-build',
    'kubectl create namespace acme-api && kubectl label namespace acme-api tenant=acme',
  ];
  if (!plane.image) return lines;
  const runHello = (namespace: string) =>
    `kubectl run hello -n ${namespace} --image=${plane.image} --image-pull-policy=Always -- sleep 3600`;
  return [
    ...lines,
    "kubectl wait -n acme-api serviceaccount/default --for=jsonpath='{.imagePullSecrets[*].name}'=acme-registry",
    runHello('acme-api'),
    'kubectl wait -n acme-api pod/hello --for=condition=Ready --timeout=60s   # it pulled with the copy',
    runHello('globex'),
    "kubectl wait -n globex pod/hello --for=jsonpath='{.status.containerStatuses[0].state.waiting.reason}'=ErrImagePull --timeout=60s   # globex is no acme tenant",
    'kubectl describe pod hello -n globex   # Events: 401 Unauthorized from the registry',
  ];
}

function startOperator(plane: ControlPlane): ChildProcess {
  const log = openSync(join(plane.logsDir, 'regcred.log'), 'a');
  // Probes on a free loopback port: several local clusters (or a test run beside one) coexist.
  const args = ['--source-namespaces=regcred-system', '--health-probe-bind-address=127.0.0.1:0'];
  return spawn(process.execPath, [join(ROOT, 'src', 'main.ts'), ...args], {
    env: { ...process.env, KUBECONFIG: plane.admin.path },
    stdio: ['ignore', log, log],
    detached: true, // its own process group, so that cleanup after a crash can reach it
  });
}

/** Whether to start the node: asked for, and possible here (else one line says why not). */
async function wantNode(noNode: boolean): Promise<boolean> {
  if (noNode) return false;
  const cause = await nodePreflight();
  if (cause) progress.note(`${cause}: running the control plane alone, without a node`);
  return cause === undefined;
}

async function main(): Promise<void> {
  const values = flags({ 'no-node': { type: 'boolean' } }, USAGE);
  const started = Date.now();
  let plane: ControlPlane | undefined;
  let operator: ChildProcess | undefined;
  const stopOperator = async () => {
    if (!operator || operator.exitCode !== null) return;
    const exited = new Promise((r) => operator?.once('exit', r));
    operator.kill('SIGTERM');
    await exited;
  };
  try {
    plane = await ControlPlane.start({ progress, node: await wantNode(values['no-node'] === true) });
    stopOnInterrupt(plane, stopOperator);
    const client = new KubeClient(plane.admin.kubeConfig);
    await client.create(
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      customResourceDefinition(),
    );
    await waitFor('the RegistryCredential API', () =>
      client.get('/apis/regcred.dev/v1alpha1/registrycredentials'),
    );
    operator = startOperator(plane);
    await plane.track('regcred', operator.pid!);
    operator.once('exit', (code) => {
      progress.note(`the operator exited (code ${code}); its log: ${join(plane!.logsDir, 'regcred.log')}`);
    });
    let image: string | undefined;
    if (plane.node) {
      const password = randomBytes(18).toString('base64url');
      await plane.node.registry.setUser(SAMPLE_REGISTRY_USER, password);
      image = await plane.node.pushPrivateImage(SAMPLE_IMAGE.repository, SAMPLE_IMAGE.tag);
      await applySamples(
        client,
        nodeSampleObjects(plane.node.registry.dockerConfigJson(SAMPLE_REGISTRY_USER, password)),
      );
    } else {
      await applySamples(client);
    }
    await waitFor('the sample RegistryCredential to be Ready', async () => {
      const rc = await client.get<{ status?: { conditions?: { type: string; status: string }[] } }>(
        '/apis/regcred.dev/v1alpha1/registrycredentials/acme-registry',
      );
      if (!rc.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
        throw new Error('not ready yet');
    });
    const kubectl = (...args: string[]) =>
      run(plane!.binaries.kubectl, ['--kubeconfig', plane!.admin.path, ...args]);
    const views = [(await kubectl('get', 'regcred')).stdout];
    if (image) {
      // Created once the credential is Ready, so its first Pod finds the pull secret on `default`.
      await applySamples(client, [sampleDeployment(image)]);
      await waitFor(`the Deployment ${SAMPLE_APP.namespace}/${SAMPLE_APP.name} to run its Pod`, () =>
        kubectl(
          'wait',
          '-n',
          SAMPLE_APP.namespace,
          `deployment/${SAMPLE_APP.name}`,
          '--for=condition=Available',
          '--timeout=5s',
        ),
      );
      views.push((await kubectl('get', 'pods', '-n', SAMPLE_APP.namespace, '-o', 'wide')).stdout);
    }
    const indent = (text: string) =>
      text
        .trimEnd()
        .split('\n')
        .map((l) => `  ${l}`);
    const what = plane.node
      ? `A local Kubernetes cluster is running at ${plane.server} (a control plane, the node ${plane.node.name} and a private registry at ${plane.node.registry.host}), with regcred and its samples:`
      : `A local Kubernetes control plane is running at ${plane.server}, with regcred and its samples:`;
    process.stdout.write(
      [
        '',
        what,
        '',
        ...views.flatMap((v) => [...indent(v), '']),
        ...(image
          ? [
              `The Deployment ${SAMPLE_APP.namespace}/${SAMPLE_APP.name} runs the private image ${image}, pulled with regcred's copy of`,
              `the source Secret regcred-system/acme-pull (started in ${Math.round((Date.now() - started) / 1000)} s).`,
              '',
            ]
          : []),
        'Use it from another terminal:',
        '',
        ...pasteLines({
          kubeconfig: plane.admin.path,
          kubectl: plane.binaries.kubectl,
          kubectlOrigin: plane.binaries.origin,
          image,
        }).map((l) => `  ${l}`),
        '',
        `Component logs: ${plane.logsDir} (the operator's: regcred.log)`,
        'Press Ctrl-C to stop everything; nothing is left behind.',
        '',
      ].join('\n'),
    );
    // Stay up until a signal arrives; report a component that dies meanwhile.
    setInterval(async () => {
      const failures = await plane!.failures();
      if (failures.length > 0) {
        await stopOperator();
        const kept = await plane!.stop({ keepLogs: true });
        progress.note(`${failures.join('\n')}\nlogs kept in ${kept}`);
        process.exit(1);
      }
    }, 2000);
  } catch (err) {
    progress.note(err instanceof ControlPlaneError ? err.message : String((err as Error).stack ?? err));
    await stopOperator().catch(() => {});
    const kept = await plane?.stop({ keepLogs: true }).catch(() => undefined);
    if (kept) progress.note(`logs kept in ${kept}`);
    process.exit(1);
  }
}

async function waitFor(what: string, probe: () => Promise<unknown>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await probe();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

if (import.meta.main) await main();
