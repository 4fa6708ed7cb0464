/**
 * Installing and uninstalling regcred as a platform team does: config/default with kubectl's
 * kustomize, the RBAC it grants (pinned, so that an added rule is a visible review decision), the
 * Deployment's hardening, both uninstall paths, and the production install of the entry point.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { loadAll } from 'js-yaml';
import { ControlPlane } from '../../controlplane/index.ts';
import { KubeClient } from '../../src/runtime/kube.ts';
import { killQuietly, type RegcredProcess, startRegcred } from '../support/processes.ts';
import { eventually } from '../support/wait.ts';
import {
  CONFIG_DEFAULT,
  installRegcred,
  kubectl,
  operatorConfig,
  SOURCE_NAMESPACE,
} from '../support/world.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  nonResourceURLs?: string[];
  verbs: string[];
}
interface Manifest {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Rule[];
  spec?: Record<string, unknown>;
}

async function render(): Promise<Manifest[]> {
  return loadAll(await kubectl('kustomize', CONFIG_DEFAULT)) as Manifest[];
}

function flatten(rules: Rule[]): string[] {
  return rules.flatMap((r) =>
    (r.resources ?? r.nonResourceURLs ?? []).map(
      (res) => `${r.apiGroups?.[0] ?? ''}/${res}: ${[...r.verbs].sort().join(',')}`,
    ),
  );
}

describe('config/default', function () {
  this.timeout(60_000);
  before(installRegcred);

  it('applies cleanly with kubectl apply -k, and then matches the cluster', async () => {
    const out = await kubectl('apply', '-k', CONFIG_DEFAULT);
    expect(out).not.to.match(/error|warning/i);
    // kubectl diff exits 0 when the cluster already matches.
    await kubectl('diff', '-k', CONFIG_DEFAULT);
  });

  it('grants exactly these RBAC rules (a new rule must be added here, on purpose)', async () => {
    const rbac = Object.fromEntries(
      (await render())
        .filter((m) => m.rules)
        .map((m) => [`${m.kind} ${m.metadata.namespace ?? ''}/${m.metadata.name}`, flatten(m.rules!)]),
    );
    expect(rbac).to.deep.equal({
      'ClusterRole /regcred-manager': [
        'regcred.dev/registrycredentials: list,patch,watch',
        'regcred.dev/registrycredentials/status: patch',
        '/namespaces: list,watch',
        '/serviceaccounts: list,patch,watch',
        '/secrets: create,delete,get,list,patch,watch',
        '/events: create',
      ],
      'Role regcred-system/regcred-leader-election': ['coordination.k8s.io/leases: create,get,update'],
      'ClusterRole /regcred-metrics-auth': [
        'authentication.k8s.io/tokenreviews: create',
        'authorization.k8s.io/subjectaccessreviews: create',
      ],
      'ClusterRole /regcred-metrics-reader': ['//metrics: get'],
    });
  });

  it('runs two hardened replicas with leader election, probes, resources and the image set in one place', async () => {
    const deployment = (await render()).find((m) => m.kind === 'Deployment') as unknown as {
      spec: {
        replicas: number;
        template: {
          spec: {
            securityContext: Record<string, unknown>;
            serviceAccountName: string;
            containers: {
              image: string;
              args: string[];
              securityContext: Record<string, unknown>;
              livenessProbe: { httpGet: { path: string } };
              readinessProbe: { httpGet: { path: string } };
              resources: { requests: Record<string, string>; limits: Record<string, string> };
            }[];
          };
        };
      };
    };
    const pod = deployment.spec.template.spec;
    const [manager] = pod.containers;
    expect(deployment.spec.replicas).to.equal(2);
    expect(pod.serviceAccountName).to.equal('regcred');
    expect(pod.securityContext).to.deep.include({
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(manager!.securityContext).to.deep.equal({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(manager!.args).to.include.members([
      '--leader-elect',
      '--metrics-bind-address=:8443',
      '--metrics-secure',
    ]);
    expect(manager!.livenessProbe.httpGet.path).to.equal('/healthz');
    expect(manager!.readinessProbe.httpGet.path).to.equal('/readyz');
    expect(manager!.resources.requests).to.have.keys('cpu', 'memory');
    expect(manager!.resources.limits).to.have.key('memory');
    expect(manager!.image).to.equal('ghcr.io/regcred/regcred:0.1.0');
    // The image name appears in exactly one place of config/.
    const mentions = readdirSync(join(ROOT, 'config'), { recursive: true })
      .map(String)
      .filter(
        (f) =>
          f.endsWith('.yaml') &&
          readFileSync(join(ROOT, 'config', f), 'utf8').includes('ghcr.io/regcred/regcred'),
      );
    expect(mentions).to.deep.equal(['manager/kustomization.yaml']);
  });
});

describe('uninstalling', function () {
  this.timeout(180_000);
  let plane: ControlPlane;
  let operator: RegcredProcess | undefined;

  // A control plane of its own: uninstalling removes the CRD and the namespace for everyone.
  before(async () => {
    plane = await ControlPlane.start();
  });
  after(async () => {
    await killQuietly(operator);
    await plane?.stop();
  });

  const k = async (...args: string[]) =>
    (await run(plane.binaries.kubectl, ['--kubeconfig', plane.admin.path, ...args])).stdout;

  /** Installs, runs the operator as its ServiceAccount, and propagates one credential to `ns`. */
  async function installAndPropagate(name: string, ns: string): Promise<KubeClient> {
    await k('apply', '-k', CONFIG_DEFAULT);
    const client = new KubeClient(plane.admin.kubeConfig);
    await eventually('the API serves RegistryCredentials', () =>
      client.get('/apis/regcred.dev/v1alpha1/registrycredentials'),
    );
    await client.create('/api/v1/namespaces', { metadata: { name: ns } });
    await eventually('default exists', () => client.get(`/api/v1/namespaces/${ns}/serviceaccounts/default`));
    await client.create(`/api/v1/namespaces/${SOURCE_NAMESPACE}/secrets`, {
      metadata: { name },
      type: 'kubernetes.io/dockerconfigjson',
      stringData: { '.dockerconfigjson': '{"auths":{"r.example.com":{"auth":"dTpw"}}}' },
    });
    const identity = await plane.serviceAccountConfig('regcred-system', 'regcred');
    operator = startRegcred(identity.path, ['--health-probe-bind-address=0']);
    await operator.waitFor('running');
    await client.create('/apis/regcred.dev/v1alpha1/registrycredentials', {
      apiVersion: 'regcred.dev/v1alpha1',
      kind: 'RegistryCredential',
      metadata: { name },
      spec: { source: { secretRef: { namespace: SOURCE_NAMESPACE, name } }, namespaces: { names: [ns] } },
    });
    await eventually('the copy and the entry are there', async () => {
      const sa = await client.get<{ imagePullSecrets?: { name: string }[] }>(
        `/api/v1/namespaces/${ns}/serviceaccounts/default`,
      );
      return sa.imagePullSecrets?.some((e) => e.name === name);
    });
    return client;
  }

  const absent = async (client: KubeClient, path: string) =>
    client.get(path).then(
      () => false,
      () => true,
    );

  it('in order (RegistryCredentials, then the operator, then the rest) leaves nothing behind', async () => {
    const client = await installAndPropagate('first', 'tenant-a');
    await k('delete', 'registrycredentials', '--all', '--wait=true', '--timeout=60s');
    expect(await absent(client, '/api/v1/namespaces/tenant-a/secrets/first')).to.equal(true);
    const sa = await client.get<{ imagePullSecrets?: unknown[] }>(
      '/api/v1/namespaces/tenant-a/serviceaccounts/default',
    );
    expect(sa.imagePullSecrets ?? []).to.deep.equal([]);
    operator!.child.kill('SIGTERM');
    expect(await operator!.exited).to.equal(0);
    await k('delete', '-k', CONFIG_DEFAULT, '--wait=true', '--timeout=90s');
    expect(
      await absent(
        client,
        '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/registrycredentials.regcred.dev',
      ),
    ).to.equal(true);
    expect(await absent(client, '/api/v1/namespaces/regcred-system')).to.equal(true);
  });

  it('when the operator is already gone, removing the finalizer ends the deletion and the garbage collector removes the copies', async () => {
    const client = await installAndPropagate('second', 'tenant-b');
    await killQuietly(operator);
    await k('delete', 'registrycredential', 'second', '--wait=false');
    const stuck = await client.get<{ metadata: { deletionTimestamp?: string; finalizers?: string[] } }>(
      '/apis/regcred.dev/v1alpha1/registrycredentials/second',
    );
    expect(stuck.metadata.deletionTimestamp).to.be.a('string');
    expect(stuck.metadata.finalizers).to.deep.equal(['regcred.dev/cleanup']);
    // The way out documented in the README.
    await k(
      'patch',
      'registrycredential',
      'second',
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":null}}',
    );
    await eventually('the RegistryCredential is gone', () =>
      absent(client, '/apis/regcred.dev/v1alpha1/registrycredentials/second'),
    );
    await eventually(
      'the garbage collector removed the copy (its owner is gone)',
      () => absent(client, '/api/v1/namespaces/tenant-b/secrets/second'),
      { timeoutMs: 120_000, intervalMs: 500 },
    );
  });
});

describe('the production entry point', function () {
  this.timeout(180_000);
  let p: RegcredProcess | undefined;
  after(async () => killQuietly(p));

  it('installs with npm ci --omit=dev, without development packages, and runs under Node 24', async () => {
    const app = mkdtempSync(join(tmpdir(), 'regcred-image-'));
    for (const f of ['package.json', 'package-lock.json']) cpSync(join(ROOT, f), join(app, f));
    cpSync(join(ROOT, 'src'), join(app, 'src'), { recursive: true });
    await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: app,
      timeout: 150_000,
    });
    for (const dev of ['mocha', 'typescript', 'node', 'chai', '@biomejs']) {
      expect(existsSync(join(app, 'node_modules', dev)), `${dev} installed`).to.equal(false);
    }
    // The image runs this with the node of its base image; here, the project's Node 24.
    const help = await run(process.execPath, [join(app, 'src', 'main.ts'), '--help']);
    expect(help.stdout).to.contain('--leader-elect');

    await installRegcred();
    p = startRegcred(
      (await operatorConfig()).path,
      ['--health-probe-bind-address=0'],
      {},
      join(app, 'src', 'main.ts'),
    );
    await p.waitFor('running');
    p.child.kill('SIGTERM');
    expect(await p.exited).to.equal(0);
  });
});
