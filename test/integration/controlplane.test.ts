/**
 * The shared local control plane is a real cluster: controller-manager behaviour, API validation,
 * RBAC, ServiceAccount tokens, namespace deletion and restarts with the data kept.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  ApiException,
  AuthenticationV1Api,
  CoreV1Api,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { expect } from 'chai';
import { kubernetesVersion } from '../../controlplane/index.ts';
import { cluster } from '../support/cluster.ts';
import { eventually } from '../support/wait.ts';

const run = promisify(execFile);

async function statusOf(call: Promise<unknown>): Promise<number> {
  try {
    await call;
    return 200;
  } catch (err) {
    if (err instanceof ApiException) return err.code;
    throw err;
  }
}

let counter = 0;
function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${counter++}`;
}

describe('the local control plane', function () {
  this.timeout(60_000);
  let core: CoreV1Api;

  before(() => {
    core = cluster().admin.kubeConfig.makeApiClient(CoreV1Api);
  });

  it('reports the pinned Kubernetes version', async () => {
    const res = await cluster().get('/version');
    expect(JSON.parse(res.body).gitVersion).to.equal(await kubernetesVersion());
  });

  it('gives a new namespace its default ServiceAccount from the controller-manager', async () => {
    const name = uniqueName('cp-sa');
    await core.createNamespace({ body: { metadata: { name } } });
    const sa = await eventually('the default ServiceAccount exists', () =>
      core.readNamespacedServiceAccount({ name: 'default', namespace: name }),
    );
    expect(sa.metadata?.namespace).to.equal(name);
    await eventually('kube-root-ca.crt is published', () =>
      core.readNamespacedConfigMap({ name: 'kube-root-ca.crt', namespace: name }),
    );
  });

  it('rejects a kubernetes.io/dockerconfigjson Secret without .dockerconfigjson', async () => {
    const code = await statusOf(
      core.createNamespacedSecret({
        namespace: 'default',
        body: { metadata: { name: uniqueName('bad') }, type: 'kubernetes.io/dockerconfigjson', data: {} },
      }),
    );
    expect(code).to.equal(422);
  });

  it('denies an unprivileged user by RBAC until a RoleBinding allows it', async () => {
    const namespace = uniqueName('cp-rbac');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    const user = await cluster().userConfig('alice', ['tenants']);
    const asAlice = user.kubeConfig.makeApiClient(CoreV1Api);
    expect(await statusOf(asAlice.listNamespacedConfigMap({ namespace }))).to.equal(403);

    // An explicit Role: the built-in `view` ClusterRole is aggregated, and the aggregation
    // controller is not among the controllers this control plane runs.
    const rbac = cluster().admin.kubeConfig.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace,
      body: {
        metadata: { name: 'configmap-reader' },
        rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: 'tenants-read' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'configmap-reader' },
        subjects: [{ kind: 'Group', name: 'tenants', apiGroup: 'rbac.authorization.k8s.io' }],
      },
    });
    await eventually(
      'alice may list ConfigMaps',
      async () => (await statusOf(asAlice.listNamespacedConfigMap({ namespace }))) === 200,
    );
    expect(await statusOf(asAlice.listNamespacedConfigMap({ namespace: 'default' }))).to.equal(403);
  });

  it('authenticates a ServiceAccount token as that ServiceAccount', async () => {
    const namespace = uniqueName('cp-token');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'robot' } } });
    const sa = await cluster().serviceAccountConfig(namespace, 'robot');
    const review = await sa.kubeConfig.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    expect(review.status?.userInfo?.username).to.equal(`system:serviceaccount:${namespace}:robot`);
    expect(review.status?.userInfo?.groups).to.include('system:serviceaccounts');
  });

  it('completes the deletion of a namespace with objects in it', async () => {
    const namespace = uniqueName('cp-delete');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'data' }, data: { a: 'b' } },
    });
    await eventually('the default ServiceAccount exists', () =>
      core.readNamespacedServiceAccount({ name: 'default', namespace }),
    );
    await core.deleteNamespace({ name: namespace });
    await eventually(
      'the namespace is gone',
      async () => (await statusOf(core.readNamespace({ name: namespace }))) === 404,
    );
  });

  it('serves the built kubectl', async () => {
    const { stdout } = await run(cluster().binaries.kubectl, [
      '--kubeconfig',
      cluster().admin.path,
      'get',
      'namespace',
      'default',
      '-o',
      'jsonpath={.metadata.name}',
    ]);
    expect(stdout).to.equal('default');
  });

  it('keeps the data when kube-apiserver is restarted, and etcd too', async () => {
    const name = uniqueName('kept');
    await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name }, data: { k: 'v' } },
    });

    await cluster().stopApiserver();
    expect(
      await statusOf(core.readNamespacedConfigMap({ name, namespace: 'default' })).catch(() => 0),
    ).to.equal(0);
    await cluster().startApiserver();
    const afterApiserver = await core.readNamespacedConfigMap({ name, namespace: 'default' });
    expect(afterApiserver.data).to.deep.equal({ k: 'v' });

    await cluster().stopEtcd();
    await cluster().startEtcd();
    const afterEtcd = await eventually('the ConfigMap is readable again', () =>
      core.readNamespacedConfigMap({ name, namespace: 'default' }),
    );
    expect(afterEtcd.data).to.deep.equal({ k: 'v' });
    expect(await cluster().failures()).to.deep.equal([]);
  });
});
