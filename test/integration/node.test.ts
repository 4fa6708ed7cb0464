/**
 * The local node: a control plane of its own started with `{ node: true }` (the shared fixture
 * stays node-less). Pods run, scheduled by kube-scheduler and created by the Deployment
 * controllers; a Pod reaches kube-apiserver through the `kubernetes` Service with in-cluster
 * config; and stopping the node leaves the machine exactly as it was.
 */
import {
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  RbacAuthorizationV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import { expect } from 'chai';
import {
  ControlPlane,
  KUBECTL_IMAGE,
  machineSnapshot,
  NODE_NAME,
  PAUSE_IMAGE,
  resolveNodeBinaries,
  streamProgress,
} from '../../controlplane/index.ts';
import { eventually } from '../support/wait.ts';

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
  let snapshotBefore: Record<string, string[]>;
  let tools: { nft: string; nftLibDir: string };
  let kc: KubeConfig;
  let core: CoreV1Api;

  before(async function () {
    this.timeout(20 * 60_000);
    tools = await resolveNodeBinaries({ progress: streamProgress() });
    snapshotBefore = await machineSnapshot(tools);
    plane = await ControlPlane.start({ node: true, progress: streamProgress(), readyTimeoutMs: 120_000 });
    kc = plane.admin.kubeConfig;
    core = kc.makeApiClient(CoreV1Api);
  });

  after(async function () {
    this.timeout(120_000);
    await plane?.stop({ keepLogs: this.currentTest?.state === 'failed' });
  });

  it('is Ready and schedulable when start returns', async () => {
    const node = await core.readNode({ name: NODE_NAME });
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready?.status).to.equal('True');
    expect(node.spec?.taints ?? []).to.deep.equal([]);
    expect(node.spec?.unschedulable ?? false).to.equal(false);
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

  describe('pulling from the private registry', () => {
    let image: string;
    const password = `pw-${Date.now().toString(36)}`;

    before(async function () {
      this.timeout(60_000);
      await plane!.node!.registry.setUser('tenant-a', password);
      image = await plane!.node!.pushPrivateImage('acme/app', '1');
    });

    async function tenant(withSecret: boolean): Promise<string> {
      const namespace = uniqueName(withSecret ? 'node-pull' : 'node-nopull');
      await core.createNamespace({ body: { metadata: { name: namespace } } });
      if (withSecret) {
        await core.createNamespacedSecret({
          namespace,
          body: {
            metadata: { name: 'pull' },
            type: 'kubernetes.io/dockerconfigjson',
            stringData: { '.dockerconfigjson': plane!.node!.registry.dockerConfigJson('tenant-a', password) },
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
      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name: 'app' },
          spec: {
            restartPolicy: 'Never',
            containers: [
              { name: 'app', image, imagePullPolicy: 'Always', args: ['echo', 'private image ran'] },
            ],
          },
        },
      });
      return namespace;
    }

    it('a Pod whose ServiceAccount lists the pull Secret pulls the private image, as that user', async () => {
      const namespace = await tenant(true);
      await eventually(
        'the Pod succeeded',
        async () => (await podPhase(core, namespace, 'app')).status?.phase === 'Succeeded',
        { timeoutMs: 60_000 },
      );
      expect(await core.readNamespacedPodLog({ namespace, name: 'app' })).to.contain('private image ran');
      await eventually('the registry recorded the pull by tenant-a', async () =>
        (await plane!.node!.registry.pulls()).some(
          (p) => p.user === 'tenant-a' && p.repository === 'acme/app',
        ),
      );
    });

    it('a Pod without the Secret is refused by the registry', async () => {
      const namespace = await tenant(false);
      const waiting = await eventually(
        'the Pod waits with ErrImagePull or ImagePullBackOff',
        async () => {
          const state = (await podPhase(core, namespace, 'app')).status?.containerStatuses?.[0]?.state
            ?.waiting;
          return state?.reason === 'ErrImagePull' || state?.reason === 'ImagePullBackOff' ? state : undefined;
        },
        { timeoutMs: 60_000 },
      );
      expect(waiting.message ?? '').to.match(/401|unauthorized|authorization|basic auth/i);
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
