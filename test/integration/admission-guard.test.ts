/**
 * The copy guard (`config/copy-guard`), and the injection policy's failure modes, on a control
 * plane of their own: they install regcred with both optional parts through the documented
 * one-line changes to config/default, loosen and delete the CRD, and uninstall everything, which
 * would pull the ground from under every other test.
 *
 * The operator runs as its own process and ServiceAccount (as in a cluster); the tenant is a user
 * who may do anything with the Secrets of its namespace; the controller-manager runs its controllers under
 * their own ServiceAccounts (`--use-service-account-credentials`), as in a real cluster.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { type ClientConfig, ControlPlane } from '../../controlplane/index.ts';
import { ApiError, KubeClient } from '../../src/runtime/kube.ts';
import {
  admissionObjectPath,
  admissionObjects,
  awaitInjection,
  CONFIG,
  dryRunPullSecrets,
  policyChecks,
  rejection,
} from '../support/admission.ts';
import { suiteFailed } from '../support/failures.ts';
import { killQuietly, type RegcredProcess, startRegcred } from '../support/processes.ts';
import { eventually } from '../support/wait.ts';

const run = promisify(execFile);
const RC_PATH = '/apis/regcred.dev/v1alpha1/registrycredentials';
const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/registrycredentials.regcred.dev';
const SOURCE_NAMESPACE = 'regcred-system';
/** The lines of config/default/kustomization.yaml that the README tells users to uncomment. */
const OPTIONAL_PARTS = ['- ../admission', '- ../copy-guard'];

/** A copy of config/ with the optional parts' lines of config/default uncommented, as the README says. */
function configWithOptionalParts(): string {
  const dir = mkdtempSync(join(tmpdir(), 'regcred-config-'));
  cpSync(CONFIG, dir, { recursive: true });
  const file = join(dir, 'default', 'kustomization.yaml');
  let text = readFileSync(file, 'utf8');
  for (const line of OPTIONAL_PARTS) {
    const commented = new RegExp(`^(\\s*)# ${line.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(\\s.*)?$`, 'm');
    expect(text, `config/default/kustomization.yaml has the line "# ${line}"`).to.match(commented);
    text = text.replace(commented, `$1${line}`);
  }
  writeFileSync(file, text);
  return dir;
}

async function absent(client: KubeClient, path: string): Promise<boolean> {
  return client.get(path).then(
    () => false,
    (err) => err instanceof ApiError && err.code === 404,
  );
}

describe('the copy guard (config/copy-guard) and the optional parts, on a control plane of its own', function () {
  this.timeout(120_000);
  let plane: ControlPlane;
  let client: KubeClient;
  let config: string;
  let operator: RegcredProcess | undefined;

  const kubectl = async (as: ClientConfig | undefined, ...args: string[]) => {
    try {
      const { stdout, stderr } = await run(plane.binaries.kubectl, [
        '--kubeconfig',
        (as ?? plane.admin).path,
        ...args,
      ]);
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  };
  const k = async (...args: string[]) => {
    const ran = await kubectl(undefined, ...args);
    expect(ran.code, `kubectl ${args.join(' ')}: ${ran.stderr}`).to.equal(0);
    return ran.stdout;
  };

  async function install(): Promise<void> {
    await k('apply', '-k', join(config, 'default'));
    await eventually('the API serves RegistryCredentials', () => client.get(RC_PATH));
  }

  async function startOperator(): Promise<void> {
    const identity = await plane.serviceAccountConfig(SOURCE_NAMESPACE, 'regcred');
    operator = startRegcred(identity.path, ['--health-probe-bind-address=0']);
    await operator.waitFor('running');
  }

  async function namespace(name: string): Promise<void> {
    await client.create('/api/v1/namespaces', { metadata: { name } });
    await eventually(`${name}/default exists`, () =>
      client.get(`/api/v1/namespaces/${name}/serviceaccounts/default`),
    );
  }

  async function source(name: string, password: string): Promise<void> {
    const doc = JSON.stringify({
      auths: { 'registry.example.com': { auth: Buffer.from(`bot:${password}`).toString('base64') } },
    });
    await client
      .create(`/api/v1/namespaces/${SOURCE_NAMESPACE}/secrets`, {
        metadata: { name },
        type: 'kubernetes.io/dockerconfigjson',
        stringData: { '.dockerconfigjson': doc },
      })
      .catch(async (err) => {
        if (!(err instanceof ApiError && err.code === 409)) throw err;
        await client.mergePatch(`/api/v1/namespaces/${SOURCE_NAMESPACE}/secrets/${name}`, {
          stringData: { '.dockerconfigjson': doc },
        });
      });
  }

  async function credential(name: string, spec: Record<string, unknown>): Promise<void> {
    await client.create(RC_PATH, {
      apiVersion: 'regcred.dev/v1alpha1',
      kind: 'RegistryCredential',
      metadata: { name },
      spec: { source: { secretRef: { namespace: SOURCE_NAMESPACE, name } }, ...spec },
    });
  }

  /** Waits until the operator wrote the copy and the default ServiceAccount's entry in `ns`. */
  async function propagated(ns: string, name: string): Promise<void> {
    await eventually(`the copy and the entry are in ${ns}`, async () => {
      const sa = await client.get<{ imagePullSecrets?: { name: string }[] }>(
        `/api/v1/namespaces/${ns}/serviceaccounts/default`,
      );
      return sa.imagePullSecrets?.some((e) => e.name === name) && !(await absent(client, copyPath(ns, name)));
    });
  }

  const copyPath = (ns: string, name: string) => `/api/v1/namespaces/${ns}/secrets/${name}`;

  before(async function () {
    this.timeout(180_000);
    plane = await ControlPlane.start();
    client = new KubeClient(plane.admin.kubeConfig);
    config = configWithOptionalParts();
  });

  after(async function () {
    this.timeout(60_000);
    await killQuietly(operator);
    if (config) rmSync(config, { recursive: true, force: true });
    await plane?.stop({ keepLogs: suiteFailed(this) });
  });

  it('config/default with its two optional lines uncommented installs both parts; kubectl diff then finds nothing to change', async () => {
    await install();
    for (const obj of [...admissionObjects('admission'), ...admissionObjects('copy-guard')])
      expect(await absent(client, admissionObjectPath(obj)), `${obj.kind} ${obj.metadata.name}`).to.equal(
        false,
      );
    expect((await kubectl(undefined, 'diff', '-k', join(config, 'default'))).code).to.equal(0);
  });

  it("kube-controller-manager's controllers act under their own ServiceAccounts (--use-service-account-credentials)", async () => {
    const list = await client.get<{ items: { metadata: { name: string } }[] }>(
      '/api/v1/namespaces/kube-system/serviceaccounts',
    );
    expect(list.items.map((sa) => sa.metadata.name)).to.include.members([
      'namespace-controller',
      'generic-garbage-collector',
    ]);
  });

  describe('with the operator running', () => {
    let tenant: ClientConfig;

    before(async function () {
      this.timeout(60_000);
      for (const ns of ['guarded', 'doomed-1', 'doomed-2']) await namespace(ns);
      await source('acme', 'first');
      await startOperator();
      await credential('acme', { namespaces: { names: ['guarded', 'doomed-1', 'doomed-2'] } });
      for (const ns of ['guarded', 'doomed-1', 'doomed-2']) await propagated(ns, 'acme');
      tenant = await plane.userConfig('tenant-jo');
      // A tenant who may do anything with the Secrets of its namespace (the local control plane
      // runs no ClusterRole aggregation, so the built-in edit role would be empty here).
      await client.create('/apis/rbac.authorization.k8s.io/v1/namespaces/guarded/roles', {
        metadata: { name: 'secrets' },
        rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['*'] }],
      });
      await client.create('/apis/rbac.authorization.k8s.io/v1/namespaces/guarded/rolebindings', {
        metadata: { name: 'tenant-jo-secrets' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secrets' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'tenant-jo' }],
      });
    });

    it("a tenant's edit of a copy is denied, with a message naming the copy, its RegistryCredential and what to do", async () => {
      const label = await kubectl(tenant, 'label', 'secret', 'acme', '-n', 'guarded', 'mine=yes');
      expect(label.code).not.to.equal(0);
      expect(label.stderr).to.contain(
        'Secret guarded/acme is a copy that regcred keeps for the RegistryCredential acme: only regcred may change it.',
      );
      expect(label.stderr).to.contain('spec.namespaces.exclude');
      const edit = await rejection(
        new KubeClient(tenant.kubeConfig).mergePatch(copyPath('guarded', 'acme'), {
          data: { '.dockerconfigjson': Buffer.from('{"auths":{}}').toString('base64') },
        }),
      );
      expect(edit.code).to.equal(403);
      expect(edit.status.reason).to.equal('Forbidden');
      const copy = await client.get<{ metadata: { labels: Record<string, string> } }>(
        copyPath('guarded', 'acme'),
      );
      expect(copy.metadata.labels).not.to.have.property('mine');
    });

    it("a tenant's delete of a copy is denied, one by one and all at once", async () => {
      const one = await kubectl(tenant, 'delete', 'secret', 'acme', '-n', 'guarded');
      expect(one.code).not.to.equal(0);
      expect(one.stderr).to.contain('only regcred may delete it');
      const all = await rejection(
        new KubeClient(tenant.kubeConfig).request('DELETE', '/api/v1/namespaces/guarded/secrets'),
      );
      expect(all.code).to.equal(403);
      expect(await absent(client, copyPath('guarded', 'acme'))).to.equal(false);
    });

    it('a cluster admin is held to it too: the guard is not a matter of RBAC', async () => {
      const denied = await rejection(client.delete(copyPath('guarded', 'acme')));
      expect(denied.code).to.equal(403);
      expect(denied.message).to.contain('only regcred may delete it');
    });

    it("a tenant's own Secrets are not guarded, even labelled like a copy", async () => {
      const as = new KubeClient(tenant.kubeConfig);
      await as.create('/api/v1/namespaces/guarded/secrets', {
        metadata: { name: 'mine', labels: { 'app.kubernetes.io/managed-by': 'regcred' } },
        stringData: { a: 'b' },
      });
      await as.mergePatch('/api/v1/namespaces/guarded/secrets/mine', { stringData: { a: 'c' } });
      await as.delete('/api/v1/namespaces/guarded/secrets/mine');
      await as.create('/api/v1/namespaces/guarded/secrets', {
        metadata: { name: 'plain' },
        stringData: { a: 'b' },
      });
      await as.mergePatch('/api/v1/namespaces/guarded/secrets/plain', {
        metadata: { labels: { 'app.kubernetes.io/managed-by': 'regcred' } },
      });
      await as.delete('/api/v1/namespaces/guarded/secrets/plain');
    });

    it("the operator's own writes pass: a rotation reaches the copy", async () => {
      await source('acme', 'second');
      const rotated = await client.get<{ metadata: { resourceVersion: string } }>(
        `/api/v1/namespaces/${SOURCE_NAMESPACE}/secrets/acme`,
      );
      await eventually('the copy holds the rotated credential', async () => {
        const copy = await client.get<{
          metadata: { annotations: Record<string, string> };
          data: Record<string, string>;
        }>(copyPath('guarded', 'acme'));
        const doc = Buffer.from(copy.data['.dockerconfigjson']!, 'base64').toString();
        return (
          copy.metadata.annotations['regcred.dev/source-resource-version'] ===
            rotated.metadata.resourceVersion && doc.includes(Buffer.from('bot:second').toString('base64'))
        );
      });
    });

    it('a RegistryCredential whose evaluation fails is skipped: the Pod is admitted and the other credentials still inject', async () => {
      // The CRD's schema would refuse this exclude pattern; loosened for a moment, it lets one in
      // that the policy's regular expression cannot compile, as a credential stored under an
      // older, looser schema could be.
      const patternPath =
        '/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/namespaces/properties/exclude/items/pattern';
      await client.request('PATCH', CRD_PATH, {
        body: [{ op: 'remove', path: patternPath }],
        contentType: 'application/json-patch+json',
      });
      await eventually('the loosened CRD accepts the pattern', async () => {
        await credential('broken', { namespaces: { names: ['guarded'], exclude: ['('] } }).catch((err) => {
          if (!(err instanceof ApiError && err.code === 409)) throw err;
        });
        return true;
      });
      // Written after it: once the policy injects the marker, kube-apiserver's cache holds both.
      await credential('marker', { namespaces: { names: ['guarded'] } });
      await awaitInjection(client, 'guarded', 'marker');
      const metrics = async () => policyChecks((await plane.get('/metrics')).body);
      const before = await metrics();
      // The Pod lists an entry of its own, so the ServiceAccount's are not copied: what follows it
      // comes from the policy.
      const names = await dryRunPullSecrets(client, 'guarded', { imagePullSecrets: ['mine'] });
      expect(names[0]).to.equal('mine');
      expect(names.slice(1).sort()).to.deep.equal(['acme', 'marker']);
      const after = await metrics();
      expect(
        (after.invalid_error ?? 0) - (before.invalid_error ?? 0),
        'the broken credential failed',
      ).to.equal(1);
      expect((after.no_error ?? 0) - (before.no_error ?? 0), 'acme and the marker were evaluated').to.equal(
        2,
      );
      for (const name of ['broken', 'marker']) {
        await client.delete(`${RC_PATH}/${name}`);
        await eventually(`the operator let ${name} go`, () => absent(client, `${RC_PATH}/${name}`));
      }
      await k('apply', '-k', join(config, 'crd'));
      const crd = await client.get<Record<string, unknown>>(CRD_PATH);
      expect(JSON.stringify(crd)).to.contain('^[-a-z0-9*?]+$');
    });

    it('deleting a tenant namespace that holds a copy completes', async () => {
      await client.delete('/api/v1/namespaces/doomed-1');
      await eventually('doomed-1 is gone', () => absent(client, '/api/v1/namespaces/doomed-1'), {
        timeoutMs: 60_000,
      });
    });

    describe('then without it', () => {
      before(async () => {
        await killQuietly(operator);
        operator = undefined;
      });

      it('deleting a tenant namespace that holds a copy completes', async () => {
        expect(await absent(client, copyPath('doomed-2', 'acme'))).to.equal(false);
        await client.delete('/api/v1/namespaces/doomed-2');
        await eventually('doomed-2 is gone', () => absent(client, '/api/v1/namespaces/doomed-2'), {
          timeoutMs: 60_000,
        });
      });

      it("uninstall: once the RegistryCredential's finalizer is removed the garbage collector deletes the copy, and kubectl delete -k completes", async function () {
        this.timeout(240_000);
        await k('delete', 'registrycredential', 'acme', '--wait=false');
        await k(
          'patch',
          'registrycredential',
          'acme',
          '--type=merge',
          '-p',
          '{"metadata":{"finalizers":null}}',
        );
        await eventually(
          'the garbage collector deleted the copy (its owner is gone)',
          () => absent(client, copyPath('guarded', 'acme')),
          { timeoutMs: 120_000, intervalMs: 500 },
        );
        await k('delete', '-k', join(config, 'default'), '--wait=true', '--timeout=120s');
        expect(await absent(client, CRD_PATH)).to.equal(true);
        expect(await absent(client, `/api/v1/namespaces/${SOURCE_NAMESPACE}`)).to.equal(true);
        for (const obj of [...admissionObjects('admission'), ...admissionObjects('copy-guard')])
          expect(await absent(client, admissionObjectPath(obj)), `${obj.kind} ${obj.metadata.name}`).to.equal(
            true,
          );
      });
    });
  });

  describe('installed again', () => {
    it('uninstall in order with the operator running: RegistryCredentials (the operator removes its copies), the operator, then kubectl delete -k', async function () {
      this.timeout(240_000);
      await install();
      await namespace('again');
      await source('again', 'first');
      await startOperator();
      await credential('again', { namespaces: { names: ['again'] } });
      await propagated('again', 'again');
      await k('delete', 'registrycredentials', '--all', '--wait=true', '--timeout=60s');
      expect(await absent(client, copyPath('again', 'again'))).to.equal(true);
      operator!.child.kill('SIGTERM');
      expect(await operator!.exited).to.equal(0);
      operator = undefined;
      await k('delete', '-k', join(config, 'default'), '--wait=true', '--timeout=120s');
      expect(await absent(client, CRD_PATH)).to.equal(true);
      expect(await absent(client, `/api/v1/namespaces/${SOURCE_NAMESPACE}`)).to.equal(true);
    });
  });

  describe('the CRD deleted, the injection policy left', () => {
    it('with the CRD deleted, Pods are admitted unchanged', async () => {
      await k('apply', '-k', join(config, 'admission'));
      await k('apply', '-k', join(config, 'crd'));
      await eventually('the API serves RegistryCredentials', () => client.get(RC_PATH));
      await namespace('no-crd');
      await credential('no-crd', { namespaces: { names: ['no-crd'] } });
      await awaitInjection(client, 'no-crd', 'no-crd');
      await k('delete', '-k', join(config, 'crd'), '--wait=true', '--timeout=60s');
      expect(await absent(client, CRD_PATH)).to.equal(true);
      await eventually('a Pod is admitted without the entry', async () => {
        const names = await dryRunPullSecrets(client, 'no-crd');
        return names.length === 0;
      });
      expect(await dryRunPullSecrets(client, 'no-crd', { imagePullSecrets: ['mine'] })).to.deep.equal([
        'mine',
      ]);
      expect(await absent(client, admissionObjectPath(admissionObjects('admission')[0]!))).to.equal(false);
    });
  });
});
