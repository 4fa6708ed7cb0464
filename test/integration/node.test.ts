/**
 * The local node: a control plane of its own started with `{ node: true }` (the shared fixture
 * stays node-less). Pods run, scheduled by kube-scheduler and created by the Deployment
 * controllers; a Pod reaches kube-apiserver through the `kubernetes` Service with in-cluster
 * config; and stopping the node leaves the machine exactly as it was.
 */

import { execFile } from 'node:child_process';
import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  RbacAuthorizationV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import { expect } from 'chai';
import {
  ControlPlane,
  HOST_STATE_DIR,
  KUBECTL_IMAGE,
  machineSnapshot,
  NODE_NAME,
  PAUSE_IMAGE,
  resolveNodeBinaries,
  stopOnInterrupt,
  streamProgress,
} from '../../controlplane/index.ts';
import { suiteFailed } from '../support/failures.ts';
import { machineWithoutNode } from '../support/machine.ts';
import { killQuietly, type RegcredProcess, startRegcred } from '../support/processes.ts';
import { eventually } from '../support/wait.ts';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..', '..');

let counter = 0;
function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${counter++}`;
}

async function podPhase(core: CoreV1Api, namespace: string, name: string): Promise<V1Pod> {
  return core.readNamespacedPod({ namespace, name });
}

describe('the local node', function () {
  this.timeout(120_000);
  let plane: ControlPlane | undefined;
  let untie: (() => void) | undefined;
  let snapshotBefore: Record<string, string[]>;
  let tools: { nft: string; nftLibDir: string };
  let kc: KubeConfig;
  let core: CoreV1Api;

  before(async function () {
    this.timeout(20 * 60_000);
    tools = await resolveNodeBinaries({ progress: streamProgress() });
    // An empty state folder is a finished run's own leftover (older versions kept it), which the
    // start removes: not part of the machine as it was.
    await rmdir(HOST_STATE_DIR).catch(() => {});
    snapshotBefore = await machineWithoutNode(tools);
    plane = await ControlPlane.start({ node: true, progress: streamProgress(), readyTimeoutMs: 120_000 });
    // Ctrl-C stops the node too; on a hard exit its processes are killed and the next start cleans up.
    untie = stopOnInterrupt(plane);
    kc = plane.admin.kubeConfig;
    core = kc.makeApiClient(CoreV1Api);
  });

  after(async function () {
    this.timeout(120_000);
    untie?.();
    await plane?.stop({ keepLogs: suiteFailed(this) });
  });

  it('is Ready and schedulable when start returns', async () => {
    const node = await core.readNode({ name: NODE_NAME });
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready?.status).to.equal('True');
    expect(node.spec?.taints ?? []).to.deep.equal([]);
    expect(node.spec?.unschedulable ?? false).to.equal(false);
  });

  it("is the machine's one node: a second run that wants a node fails naming the holder, and the first is unharmed", async () => {
    let error: Error | undefined;
    try {
      const second = await ControlPlane.start({ node: true, nodeLockWaitMs: 1000 });
      await second.stop();
    } catch (err) {
      error = err as Error;
    }
    expect(error?.message).to.match(
      new RegExp(`another run \\(pid ${process.pid}\\) holds this machine's one local node`),
    );
    const node = await core.readNode({ name: NODE_NAME });
    expect(node.status?.conditions?.find((c) => c.type === 'Ready')?.status).to.equal('True');
    expect(await plane!.node!.failures()).to.deep.equal([]);
  });

  it('runs a Pod that kube-scheduler places, and serves its logs through the kubelet', async () => {
    const namespace = uniqueName('node-pod');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'hello' },
        spec: {
          restartPolicy: 'Never',
          containers: [
            {
              name: 'hello',
              image: PAUSE_IMAGE,
              imagePullPolicy: 'Never',
              command: ['/bin/busybox', 'sh', '-c', 'echo hello from the node'],
            },
          ],
        },
      },
    });
    const pod = await eventually(
      'the Pod succeeded',
      async () => {
        const p = await podPhase(core, namespace, 'hello');
        return p.status?.phase === 'Succeeded' ? p : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(pod.spec?.nodeName).to.equal(NODE_NAME);
    const log = await core.readNamespacedPodLog({ namespace, name: 'hello' });
    expect(log).to.contain('hello from the node');
  });

  it('lets a Pod list namespaces through the kubernetes Service with in-cluster config', async () => {
    const namespace = uniqueName('node-api');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'reader' } } });
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createClusterRole({
      body: {
        metadata: { name: `${namespace}-reader` },
        rules: [{ apiGroups: [''], resources: ['namespaces'], verbs: ['list'] }],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: `${namespace}-reader` },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${namespace}-reader` },
        subjects: [{ kind: 'ServiceAccount', namespace, name: 'reader' }],
      },
    });
    const endpoints = await core.readNamespacedEndpoints({ namespace: 'default', name: 'kubernetes' });
    const address = endpoints.subsets?.[0]?.addresses?.[0]?.ip;
    expect(address).to.equal(new URL(plane!.server).hostname);
    const run = async (name: string, args: string[]) => {
      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name },
          spec: {
            serviceAccountName: 'reader',
            restartPolicy: 'Never',
            containers: [{ name, image: KUBECTL_IMAGE, imagePullPolicy: 'Never', args }],
          },
        },
      });
      const pod = await eventually(
        `Pod ${name} finished`,
        async () => {
          const p = await podPhase(core, namespace, name);
          return p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed' ? p : undefined;
        },
        { timeoutMs: 60_000 },
      );
      return { phase: pod.status?.phase, log: await core.readNamespacedPodLog({ namespace, name }) };
    };
    const allowed = await run('list-namespaces', ['get', 'namespaces', '-o', 'name', '-v=6']);
    expect(allowed.phase, allowed.log).to.equal('Succeeded');
    expect(allowed.log).to.contain(`namespace/${namespace}`);
    // In-cluster config: the Service's ClusterIP, the ServiceAccount's token and CA.
    const request = allowed.log.split('\n').find((l) => l.includes('https://10.0.0.1:443/api/v1/namespaces'));
    expect(request, allowed.log).to.match(/GET.*200 OK/);
    const denied = await run('list-secrets', ['get', 'secrets', '-A']);
    expect(denied.phase).to.equal('Failed');
    expect(denied.log).to.contain('forbidden');
  });

  it('runs a Deployment through the controllers and the scheduler', async () => {
    const namespace = uniqueName('node-deploy');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    const apps = kc.makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'sleeper' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'sleeper' } },
          template: {
            metadata: { labels: { app: 'sleeper' } },
            spec: {
              terminationGracePeriodSeconds: 1,
              containers: [{ name: 'sleeper', image: PAUSE_IMAGE, imagePullPolicy: 'Never' }],
            },
          },
        },
      },
    });
    await eventually(
      'the Deployment has one available replica',
      async () =>
        (await apps.readNamespacedDeployment({ namespace, name: 'sleeper' })).status?.availableReplicas === 1,
      { timeoutMs: 60_000 },
    );
    const pods = await core.listNamespacedPod({ namespace, labelSelector: 'app=sleeper' });
    expect(pods.items.map((p) => p.status?.phase)).to.deep.equal(['Running']);
  });

  /** Waits until the Pod's container waits with ErrImagePull or ImagePullBackOff; its message. */
  async function refused(namespace: string, name = 'app'): Promise<string> {
    const waiting = await eventually(
      `Pod ${namespace}/${name} waits with ErrImagePull or ImagePullBackOff`,
      async () => {
        const state = (await podPhase(core, namespace, name)).status?.containerStatuses?.[0]?.state?.waiting;
        return state?.reason === 'ErrImagePull' || state?.reason === 'ImagePullBackOff' ? state : undefined;
      },
      { timeoutMs: 60_000 },
    );
    return waiting.message ?? '';
  }

  /** Waits until the registry recorded `count` pulls of the private image by `user` after `since`. */
  const pulledBy = (user: string, since: number, count = 1) =>
    eventually(`the registry recorded ${count} pull(s) by ${user}`, async () => {
      const pulls = (await plane!.node!.registry.pulls()).slice(since);
      return pulls.filter((p) => p.user === user && p.repository === 'acme/app').length >= count;
    });

  describe('pulling from the private registry', () => {
    let image: string;
    const password = `pw-${Date.now().toString(36)}`;

    before(async function () {
      this.timeout(60_000);
      await plane!.node!.registry.setUser('tenant-a', password);
      image = await plane!.node!.pushPrivateImage('acme/app', '1');
    });

    /** A namespace whose default ServiceAccount lists a pull Secret for tenant-a with `secretPassword`. */
    async function tenant(secretPassword?: string): Promise<string> {
      const namespace = uniqueName(secretPassword ? 'node-pull' : 'node-nopull');
      await core.createNamespace({ body: { metadata: { name: namespace } } });
      if (secretPassword) {
        await core.createNamespacedSecret({
          namespace,
          body: {
            metadata: { name: 'pull' },
            type: 'kubernetes.io/dockerconfigjson',
            stringData: {
              '.dockerconfigjson': plane!.node!.registry.dockerConfigJson('tenant-a', secretPassword),
            },
          },
        });
        await eventually('the default ServiceAccount exists', () =>
          core.readNamespacedServiceAccount({ namespace, name: 'default' }),
        );
        await core.patchNamespacedServiceAccount({
          namespace,
          name: 'default',
          body: [{ op: 'add', path: '/imagePullSecrets', value: [{ name: 'pull' }] }],
        });
      }
      return namespace;
    }

    async function runPrivate(namespace: string, name = 'app'): Promise<void> {
      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name },
          spec: {
            restartPolicy: 'Never',
            containers: [
              { name: 'app', image, imagePullPolicy: 'Always', args: ['echo', 'private image ran'] },
            ],
          },
        },
      });
    }

    async function succeeds(namespace: string, name = 'app'): Promise<void> {
      await eventually(
        `Pod ${name} succeeded`,
        async () => (await podPhase(core, namespace, name)).status?.phase === 'Succeeded',
        { timeoutMs: 60_000 },
      );
    }

    it('a Pod whose ServiceAccount lists the pull Secret pulls the private image, as that user', async () => {
      const since = (await plane!.node!.registry.pulls()).length;
      const namespace = await tenant(password);
      await runPrivate(namespace);
      await succeeds(namespace);
      expect(await core.readNamespacedPodLog({ namespace, name: 'app' })).to.contain('private image ran');
      await pulledBy('tenant-a', since);
    });

    it('a Pod without the Secret is refused by the registry', async () => {
      const namespace = await tenant();
      await runPrivate(namespace);
      expect(await refused(namespace)).to.match(/401|unauthorized|authorization|basic auth/i);
    });

    it('answers on the bridge address too, with the same TLS and passwords', async () => {
      const { request } = await import('node:https');
      const { readFile } = await import('node:fs/promises');
      const registry = plane!.node!.registry;
      expect(registry.bridgeHost).to.match(/^10\.201\.0\.1:\d+$/);
      const ca = await readFile(join(plane!.dir, 'pki', 'ca.crt'), 'utf8');
      const status = (auth?: string) =>
        new Promise<number>((resolve, reject) => {
          const headers: Record<string, string> = auth
            ? { authorization: `Basic ${Buffer.from(auth).toString('base64')}` }
            : {};
          const req = request(`https://${registry.bridgeHost}/v2/`, { ca, headers }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.on('error', reject);
          req.end();
        });
      expect(await status()).to.equal(401);
      expect(await status(`tenant-a:${password}`)).to.equal(200);
    });

    it('a password changed at the registry refuses the old credential; the rotated Secret pulls', async () => {
      const namespace = await tenant(password);
      const rotated = `${password}-rotated`;
      await plane!.node!.registry.setUser('tenant-a', rotated);
      await runPrivate(namespace, 'with-old');
      expect(await refused(namespace, 'with-old')).to.match(/401|unauthorized|authorization/i);
      const since = (await plane!.node!.registry.pulls()).length;
      await core.replaceNamespacedSecret({
        namespace,
        name: 'pull',
        body: {
          metadata: { name: 'pull' },
          type: 'kubernetes.io/dockerconfigjson',
          stringData: { '.dockerconfigjson': plane!.node!.registry.dockerConfigJson('tenant-a', rotated) },
        },
      });
      await runPrivate(namespace, 'with-new');
      await succeeds(namespace, 'with-new');
      await pulledBy('tenant-a', since);
    });
  });

  describe('regcred on the real node', () => {
    const SOURCE_NAMESPACE = 'regcred-system';
    const password = `acme-${Date.now().toString(36)}`;
    let image: string;
    let operator: RegcredProcess | undefined;

    before(async function () {
      this.timeout(120_000);
      const registry = plane!.node!.registry;
      await registry.setUser('acme-puller', password);
      image = await plane!.node!.pushPrivateImage('acme/app', '2');
      await run(plane!.binaries.kubectl, ['apply', '-k', join(REPO, 'config', 'default')], {
        env: { ...process.env, KUBECONFIG: plane!.admin.path },
      });
      await eventually('the API serves RegistryCredentials', async () => {
        const res = await plane!.get('/apis/regcred.dev/v1alpha1/registrycredentials');
        return res.status === 200;
      });
      await core.createNamespacedSecret({
        namespace: SOURCE_NAMESPACE,
        body: {
          metadata: { name: 'acme-pull' },
          type: 'kubernetes.io/dockerconfigjson',
          stringData: { '.dockerconfigjson': registry.dockerConfigJson('acme-puller', password) },
        },
      });
      const identity = await plane!.serviceAccountConfig(SOURCE_NAMESPACE, 'regcred');
      operator = startRegcred(identity.path, ['--health-probe-bind-address=0', '--metrics-bind-address=0']);
      await operator.waitFor('running', 60_000);
      await kc.makeApiClient(CustomObjectsApi).createClusterCustomObject({
        group: 'regcred.dev',
        version: 'v1alpha1',
        plural: 'registrycredentials',
        body: {
          apiVersion: 'regcred.dev/v1alpha1',
          kind: 'RegistryCredential',
          metadata: { name: 'acme-registry' },
          spec: {
            source: { secretRef: { namespace: SOURCE_NAMESPACE, name: 'acme-pull' } },
            namespaces: { selector: { matchLabels: { tenant: 'acme' } } },
          },
        },
      });
    });

    after(async () => {
      await killQuietly(operator);
    });

    /** A namespace; a selected one waits until regcred's entry is on its default ServiceAccount. */
    async function tenantNamespace(labels: Record<string, string>): Promise<string> {
      const namespace = uniqueName('tenant');
      await core.createNamespace({ body: { metadata: { name: namespace, labels } } });
      await eventually('the default ServiceAccount exists', () =>
        core.readNamespacedServiceAccount({ namespace, name: 'default' }),
      );
      if (labels.tenant) {
        // regcred's entry on the ServiceAccount, so that the ServiceAccount admission copies it.
        await eventually('regcred added its entry to the default ServiceAccount', async () =>
          (await core.readNamespacedServiceAccount({ namespace, name: 'default' })).imagePullSecrets?.some(
            (e) => e.name === 'acme-registry',
          ),
        );
      }
      return namespace;
    }

    async function runApp(
      namespace: string,
      name = 'app',
      imagePullPolicy: 'Always' | 'IfNotPresent' = 'Always',
      imagePullSecrets?: { name: string }[],
    ): Promise<void> {
      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name },
          spec: {
            restartPolicy: 'Never',
            ...(imagePullSecrets ? { imagePullSecrets } : {}),
            containers: [{ name: 'app', image, imagePullPolicy, args: ['echo', 'tenant app ran'] }],
          },
        },
      });
    }

    async function podWithPrivateImage(
      labels: Record<string, string>,
      imagePullPolicy: 'Always' | 'IfNotPresent' = 'Always',
    ): Promise<string> {
      const namespace = await tenantNamespace(labels);
      await runApp(namespace, 'app', imagePullPolicy);
      return namespace;
    }

    async function succeeded(namespace: string, name = 'app'): Promise<V1Pod> {
      return eventually(
        `Pod ${namespace}/${name} succeeded`,
        async () => {
          const p = await podPhase(core, namespace, name);
          return p.status?.phase === 'Succeeded' ? p : undefined;
        },
        { timeoutMs: 60_000 },
      );
    }

    /** The password the copy in `namespace` holds, as kubelet will read it. */
    async function copiedPassword(namespace: string): Promise<string | undefined> {
      const copy = await core
        .readNamespacedSecret({ namespace, name: 'acme-registry' })
        .catch(() => undefined);
      const doc = copy?.data?.['.dockerconfigjson'];
      if (!doc) return undefined;
      const auths = JSON.parse(Buffer.from(doc, 'base64').toString()).auths as Record<
        string,
        { password?: string }
      >;
      return auths[plane!.node!.registry.host]?.password;
    }

    async function setSource(document: string): Promise<void> {
      await core.replaceNamespacedSecret({
        namespace: SOURCE_NAMESPACE,
        name: 'acme-pull',
        body: {
          metadata: { name: 'acme-pull' },
          type: 'kubernetes.io/dockerconfigjson',
          stringData: { '.dockerconfigjson': document },
        },
      });
    }

    it("a Pod in a selected tenant namespace pulls through regcred's copy and entry alone", async () => {
      const since = (await plane!.node!.registry.pulls()).length;
      const namespace = await podWithPrivateImage({ tenant: 'acme' });
      const pod = await succeeded(namespace);
      expect(pod.spec?.imagePullSecrets).to.deep.equal([{ name: 'acme-registry' }]);
      await pulledBy('acme-puller', since);
    });

    it('the same Pod in an unselected namespace is refused', async () => {
      const namespace = await podWithPrivateImage({});
      expect(await refused(namespace)).to.match(/401|unauthorized|authorization|basic auth/i);
    });

    it("is refused with IfNotPresent too, though the tenant's pull left the image on the node", async () => {
      // The first test pulled the image for a tenant: it is on the node now.
      expect(await plane!.node!.images()).to.include(image);
      const namespace = await podWithPrivateImage({}, 'IfNotPresent');
      expect(await refused(namespace)).to.match(/401|unauthorized|authorization|basic auth/i);
    });

    describe('rotation, an invalid source and uninstall', () => {
      const rotated = `${password}-rotated`;
      let tenants: string[];

      before(async function () {
        this.timeout(60_000);
        tenants = [await tenantNamespace({ tenant: 'acme' }), await tenantNamespace({ tenant: 'acme' })];
      });

      it('rotation end to end: new Pods in every selected namespace pull with the new password; the old one is refused', async () => {
        const registry = plane!.node!.registry;
        await registry.setUser('acme-puller', rotated);
        await setSource(registry.dockerConfigJson('acme-puller', rotated));
        for (const ns of tenants)
          await eventually(
            `the copy in ${ns} holds the new password`,
            async () => (await copiedPassword(ns)) === rotated,
          );
        const since = (await registry.pulls()).length;
        for (const ns of tenants) await runApp(ns, 'after-rotation');
        for (const ns of tenants) await succeeded(ns, 'after-rotation');
        await pulledBy('acme-puller', since, tenants.length);
        // A Pod given the old credential is refused by the registry.
        const stale = await tenantNamespace({});
        await core.createNamespacedSecret({
          namespace: stale,
          body: {
            metadata: { name: 'old' },
            type: 'kubernetes.io/dockerconfigjson',
            stringData: { '.dockerconfigjson': registry.dockerConfigJson('acme-puller', password) },
          },
        });
        await runApp(stale, 'app', 'Always', [{ name: 'old' }]);
        expect(await refused(stale)).to.match(/401|unauthorized|authorization/i);
      });

      it('an invalid source is never propagated: new Pods keep pulling with the last good credential', async () => {
        // Valid JSON (the API checks that) that kubelet could not use: no registry at all.
        await setSource('{"auths": {}}');
        await eventually('regcred reports the source invalid', async () => {
          const rc = (await kc.makeApiClient(CustomObjectsApi).getClusterCustomObject({
            group: 'regcred.dev',
            version: 'v1alpha1',
            plural: 'registrycredentials',
            name: 'acme-registry',
          })) as { status?: { conditions?: { type: string; status: string }[] } };
          return rc.status?.conditions?.some((c) => c.type === 'SourceValid' && c.status === 'False');
        });
        for (const ns of tenants) expect(await copiedPassword(ns)).to.equal(rotated);
        const since = (await plane!.node!.registry.pulls()).length;
        for (const ns of tenants) await runApp(ns, 'while-invalid');
        for (const ns of tenants) await succeeded(ns, 'while-invalid');
        // Pulled with the last good login, as the registry saw it.
        await pulledBy('acme-puller', since, tenants.length);
      });

      it('uninstall: after the RegistryCredential is deleted, new Pods in the former tenants are refused', async () => {
        await kc.makeApiClient(CustomObjectsApi).deleteClusterCustomObject({
          group: 'regcred.dev',
          version: 'v1alpha1',
          plural: 'registrycredentials',
          name: 'acme-registry',
        });
        for (const ns of tenants) {
          await eventually(`regcred removed its entry and copy in ${ns}`, async () => {
            const sa = await core.readNamespacedServiceAccount({ namespace: ns, name: 'default' });
            return !sa.imagePullSecrets?.length && (await copiedPassword(ns)) === undefined;
          });
        }
        for (const ns of tenants) await runApp(ns, 'after-uninstall');
        for (const ns of tenants)
          expect(await refused(ns, 'after-uninstall')).to.match(/401|unauthorized|authorization|basic auth/i);
      });
    });
  });

  // Last: mocha runs a suite's own tests before its nested suites.
  describe('stopping', () => {
    it('leaves nothing behind when it stops', async () => {
      const during = await machineSnapshot(tools);
      expect(during.links).to.include('regcred0');
      expect(during.cgroups?.length).to.be.greaterThan(0);
      await plane!.stop();
      plane = undefined;
      const after = await machineSnapshot(tools);
      expect(after).to.deep.equal(snapshotBefore);
    });
  });
});
