/**
 * `npm run local`: regcred on a real local Kubernetes control plane, for trying it out.
 *
 * Starts the control plane (building it the first time), installs the CRD, starts the operator
 * from its production entry point (`src/main.ts`, as a separate process, as the image runs it),
 * applies the samples in `config/samples/`, prints the live `kubectl get regcred` view and how to
 * use the cluster, and stays up until Ctrl-C, which stops the operator and leaves nothing behind.
 * Importing it starts nothing: tests use its samples and the lines it prints.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { openSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadAll } from 'js-yaml';
import { ControlPlane, ControlPlaneError, stopOnInterrupt, streamProgress } from '../controlplane/index.ts';
import { customResourceDefinition } from '../src/api/crd.ts';
import { ApiError, KubeClient } from '../src/runtime/kube.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SAMPLES = join(ROOT, 'config', 'samples');
const run = promisify(execFile);
const progress = streamProgress(process.stderr, '[local] ');

export interface SampleObject {
  kind: string;
  apiVersion: string;
  metadata: { name: string; namespace?: string };
}

/** The objects of the sample files in `config/samples/`, namespaces first. */
export function sampleObjects(): SampleObject[] {
  return readdirSync(SAMPLES)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) => loadAll(readFileSync(join(SAMPLES, f), 'utf8')) as SampleObject[])
    .filter(Boolean)
    .sort((a, b) => Number(b.kind === 'Namespace') - Number(a.kind === 'Namespace'));
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

/** Creates each sample object, namespaces first; objects that exist are left alone. Returns those it created. */
export async function applySamples(client: KubeClient): Promise<SampleObject[]> {
  const created: SampleObject[] = [];
  for (const obj of sampleObjects()) {
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
 * control plane's kubectl, then commands to try on the samples.
 */
export function pasteLines(plane: { kubeconfig: string; kubectl: string; kubectlOrigin: string }): string[] {
  const kubectlDir = dirname(plane.kubectl);
  const origin = plane.kubectlOrigin === kubectlDir ? 'built for regcred' : `from ${plane.kubectlOrigin}`;
  return [
    `export KUBECONFIG=${plane.kubeconfig}`,
    `export PATH=${kubectlDir}:$PATH   # kubectl ${origin}`,
    'kubectl get regcred',
    'kubectl describe regcred acme-registry',
    'kubectl get secret,serviceaccount -n acme-build',
    'kubectl create namespace acme-api && kubectl label namespace acme-api tenant=acme',
  ];
}

function startOperator(plane: ControlPlane): ChildProcess {
  const log = openSync(join(plane.logsDir, 'regcred.log'), 'a');
  return spawn(process.execPath, [join(ROOT, 'src', 'main.ts'), '--source-namespaces=regcred-system'], {
    env: { ...process.env, KUBECONFIG: plane.admin.path },
    stdio: ['ignore', log, log],
    detached: true, // its own process group, so that cleanup after a crash can reach it
  });
}

async function main(): Promise<void> {
  try {
    const plane = await ControlPlane.start({ progress });
    let operator: ChildProcess | undefined;
    stopOnInterrupt(plane, async () => {
      if (!operator || operator.exitCode !== null) return;
      const exited = new Promise((r) => operator?.once('exit', r));
      operator.kill('SIGTERM');
      await exited;
    });
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
      progress.note(`the operator exited (code ${code}); its log: ${join(plane.logsDir, 'regcred.log')}`);
    });
    await applySamples(client);
    await waitFor('the sample RegistryCredential to be Ready', async () => {
      const rc = await client.get<{ status?: { conditions?: { type: string; status: string }[] } }>(
        '/apis/regcred.dev/v1alpha1/registrycredentials/acme-registry',
      );
      if (!rc.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
        throw new Error('not ready yet');
    });
    const kubectl = plane.binaries.kubectl;
    const { stdout: view } = await run(kubectl, ['--kubeconfig', plane.admin.path, 'get', 'regcred']);
    process.stdout.write(
      [
        '',
        `A local Kubernetes control plane is running at ${plane.server}, with regcred and its samples:`,
        '',
        ...view
          .trimEnd()
          .split('\n')
          .map((l) => `  ${l}`),
        '',
        'Use it from another terminal:',
        '',
        ...pasteLines({ kubeconfig: plane.admin.path, kubectl, kubectlOrigin: plane.binaries.origin }).map(
          (l) => `  ${l}`,
        ),
        '',
        `Component logs: ${plane.logsDir} (the operator's: regcred.log)`,
        'Press Ctrl-C to stop everything; nothing is left behind.',
        '',
      ].join('\n'),
    );
    // Stay up until a signal arrives; report a component that dies meanwhile.
    setInterval(async () => {
      const failures = await plane.failures();
      if (failures.length > 0) {
        operator?.kill('SIGTERM');
        const kept = await plane.stop({ keepLogs: true });
        progress.note(`${failures.join('\n')}\nlogs kept in ${kept}`);
        process.exit(1);
      }
    }, 2000);
  } catch (err) {
    progress.note(err instanceof ControlPlaneError ? err.message : String((err as Error).stack ?? err));
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
