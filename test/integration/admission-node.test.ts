/**
 * The Pod race on the real node (`ControlPlane.start({ node: true })`, one node for the whole
 * file): kubelet pulls a private image from the node's registry with the credential regcred
 * propagates.
 *
 * The race made deterministic: a test-only ValidatingAdmissionPolicy denies regcred's
 * ServiceAccount patches in the race namespaces, so regcred writes the copy there but never gets
 * its entry onto the `default` ServiceAccount: a Pod created there is exactly a Pod admitted
 * inside the race window, with the copy already in place. Without the injection policy such a
 * Pod has no pull secret and fails; with it, it runs.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { dump } from 'js-yaml';
import { ControlPlane, stopOnInterrupt, streamProgress } from '../../controlplane/index.ts';
import { ApiError, KubeClient } from '../../src/runtime/kube.ts';
import { awaitInjection, CONFIG } from '../support/admission.ts';
import { suiteFailed } from '../support/failures.ts';
import { killQuietly, type RegcredProcess, startRegcred } from '../support/processes.ts';
import { eventually } from '../support/wait.ts';

const run = promisify(execFile);
const SOURCE_NAMESPACE = 'regcred-system';
const CREDENTIAL = 'acme-registry';
const RC_PATH = '/apis/regcred.dev/v1alpha1/registrycredentials';
const DENY_LABEL = 'regcred-test/deny-serviceaccount-patches';
const DENY_MESSAGE = 'test: regcred may not patch ServiceAccounts in this namespace';

interface Pod {
  metadata: { name: string; uid: string };
  spec: { imagePullSecrets?: { name: string }[] };
  status?: {
    phase?: string;
    containerStatuses?: {
      restartCount: number;
      state?: { waiting?: { reason?: string; message?: string } };
    }[];
  };
}
interface Event {
  reason: string;
  message: string;
  involvedObject: { name: string };
}

let counter = 0;
const uniqueName = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${counter++}`;

describe('the Pod race on the real node', function () {
  this.timeout(120_000);
  let plane: ControlPlane | undefined;
  let untie: (() => void) | undefined;
  let client: KubeClient;
  let operator: RegcredProcess | undefined;
  let image: string;

  const kubectl = async (...args: string[]) =>
    (await run(plane!.binaries.kubectl, ['--kubeconfig', plane!.admin.path, ...args])).stdout;

  before(async function () {
    this.timeout(20 * 60_000);
    plane = await ControlPlane.start({ node: true, progress: streamProgress(), readyTimeoutMs: 120_000 });
    untie = stopOnInterrupt(plane);
    client = new KubeClient(plane.admin.kubeConfig);
    const registry = plane.node!.registry;
    const password = `race-${Date.now().toString(36)}`;
    await registry.setUser('acme-puller', password);
    image = await plane.node!.pushPrivateImage('acme/app', 'race');

    await kubectl('apply', '-k', join(CONFIG, 'default'));
    await eventually('the API serves RegistryCredentials', () => client.get(RC_PATH));
    await client.create(`/api/v1/namespaces/${SOURCE_NAMESPACE}/secrets`, {
      metadata: { name: 'acme-pull' },
      type: 'kubernetes.io/dockerconfigjson',
      stringData: { '.dockerconfigjson': registry.dockerConfigJson('acme-puller', password) },
    });
    const identity = await plane.serviceAccountConfig(SOURCE_NAMESPACE, 'regcred');
    operator = startRegcred(identity.path, ['--health-probe-bind-address=0', '--metrics-bind-address=0']);
    await operator.waitFor('running', 60_000);
    await client.create(RC_PATH, {
      apiVersion: 'regcred.dev/v1alpha1',
      kind: 'RegistryCredential',
      metadata: { name: CREDENTIAL },
      spec: {
        source: { secretRef: { namespace: SOURCE_NAMESPACE, name: 'acme-pull' } },
        namespaces: { selector: { matchLabels: { tenant: 'acme' } } },
      },
    });

    // The test-only policy, and a probe that it is in effect: regcred's own patch, dry run.
    await client.create('/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies', {
      metadata: { name: 'test-deny-regcred-serviceaccount-patches' },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            { apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['serviceaccounts'] },
          ],
        },
        validations: [
          {
            expression: `request.userInfo.username != 'system:serviceaccount:${SOURCE_NAMESPACE}:regcred'`,
            message: DENY_MESSAGE,
            reason: 'Forbidden',
          },
        ],
      },
    });
    await client.create('/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings', {
      metadata: { name: 'test-deny-regcred-serviceaccount-patches' },
      spec: {
        policyName: 'test-deny-regcred-serviceaccount-patches',
        validationActions: ['Deny'],
        matchResources: { namespaceSelector: { matchLabels: { [DENY_LABEL]: 'true' } } },
      },
    });
    const probe = await namespace({ [DENY_LABEL]: 'true' });
    const asRegcred = new KubeClient(identity.kubeConfig);
    await eventually('regcred may not patch ServiceAccounts in a denied namespace', async () => {
      try {
        await asRegcred.request('PATCH', `/api/v1/namespaces/${probe}/serviceaccounts/default`, {
          query: { dryRun: 'All' },
          body: { metadata: { labels: { probe: 'yes' } } },
          contentType: 'application/merge-patch+json',
        });
        return false;
      } catch (err) {
        return err instanceof ApiError && err.code === 403 && err.message.includes(DENY_MESSAGE);
      }
    });
  });

  after(async function () {
    this.timeout(120_000);
    await killQuietly(operator);
    untie?.();
    await plane?.stop({ keepLogs: suiteFailed(this) });
  });

  async function namespace(labels: Record<string, string>): Promise<string> {
    const name = uniqueName('race');
    await client.create('/api/v1/namespaces', { metadata: { name, labels } });
    await eventually(`${name}/default exists`, () =>
      client.get(`/api/v1/namespaces/${name}/serviceaccounts/default`),
    );
    return name;
  }

  /** A selected namespace where regcred has written its copy but may not patch the ServiceAccount. */
  async function raceNamespace(): Promise<string> {
    const ns = await namespace({ tenant: 'acme', [DENY_LABEL]: 'true' });
    await eventually(`regcred wrote its copy in ${ns}`, () =>
      client.get(`/api/v1/namespaces/${ns}/secrets/${CREDENTIAL}`),
    );
    return ns;
  }

  async function serviceAccountEntries(ns: string): Promise<string[]> {
    const sa = await client.get<{ imagePullSecrets?: { name: string }[] }>(
      `/api/v1/namespaces/${ns}/serviceaccounts/default`,
    );
    return (sa.imagePullSecrets ?? []).map((e) => e.name);
  }

  function deployment(ns: string) {
    return {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'app', namespace: ns },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'app' } },
        template: {
          metadata: { labels: { app: 'app' } },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [{ name: 'app', image, imagePullPolicy: 'Always', args: ['sleep', '3600'] }],
          },
        },
      },
    };
  }

  async function pods(ns: string): Promise<Pod[]> {
    return (await client.get<{ items: Pod[] }>(`/api/v1/namespaces/${ns}/pods`)).items;
  }

  /** The Deployment's first Pod, as soon as it exists. */
  async function firstPod(ns: string): Promise<Pod> {
    return eventually(`the Deployment in ${ns} has a Pod`, async () => (await pods(ns))[0], {
      timeoutMs: 60_000,
    });
  }

  async function events(ns: string, pod: string): Promise<Event[]> {
    return (
      await client.get<{ items: Event[] }>(`/api/v1/namespaces/${ns}/events`, {
        fieldSelector: `involvedObject.name=${pod}`,
      })
    ).items;
  }

  /** Waits until `first` runs, and checks it is still the namespace's only Pod, never restarted. */
  async function runsWithoutBeingRecreated(ns: string, first: Pod): Promise<Pod> {
    const running = await eventually(
      `Pod ${ns}/${first.metadata.name} is Running`,
      async () => {
        const [pod, ...others] = await pods(ns);
        if (others.length || pod?.metadata.uid !== first.metadata.uid)
          throw new Error(
            `the Pod was replaced: ${JSON.stringify((await pods(ns)).map((p) => p.metadata.name))}`,
          );
        return pod.status?.phase === 'Running' ? pod : undefined;
      },
      { timeoutMs: 90_000 },
    );
    expect(running.status?.containerStatuses?.[0]?.restartCount).to.equal(0);
    return running;
  }

  it('without the injection policy, the first Pod of a Deployment in the race window fails with ErrImagePull', async () => {
    const ns = await raceNamespace();
    await client.create(`/apis/apps/v1/namespaces/${ns}/deployments`, deployment(ns));
    const pod = await firstPod(ns);
    expect(await serviceAccountEntries(ns), 'regcred could not patch the ServiceAccount').to.deep.equal([]);
    expect(pod.spec.imagePullSecrets ?? [], 'the Pod got no pull secret').to.deep.equal([]);
    const failed = await eventually(
      'kubelet reports ErrImagePull for the Pod',
      async () =>
        (await events(ns, pod.metadata.name)).find(
          (e) => e.reason === 'Failed' && e.message.includes('ErrImagePull'),
        ),
      { timeoutMs: 60_000 },
    );
    expect(failed.message).to.equal('Error: ErrImagePull');
    const pullError = (await events(ns, pod.metadata.name)).find(
      (e) => e.reason === 'Failed' && e.message.startsWith('Failed to pull image'),
    );
    expect(pullError?.message).to.match(/401|unauthorized|authorization|basic auth/i);
  });

  describe('with the injection policy (config/admission)', () => {
    before(async () => {
      await kubectl('apply', '-k', join(CONFIG, 'admission'));
      const probe = await raceNamespace();
      await awaitInjection(client, probe, CREDENTIAL);
    });

    it("the same Deployment's first Pod gets the copy at admission and reaches Running without being recreated", async () => {
      const since = (await plane!.node!.registry.pulls()).length;
      const ns = await raceNamespace();
      await client.create(`/apis/apps/v1/namespaces/${ns}/deployments`, deployment(ns));
      const first = await firstPod(ns);
      expect(first.spec.imagePullSecrets).to.deep.equal([{ name: CREDENTIAL }]);
      await runsWithoutBeingRecreated(ns, first);
      // Its first pull worked: no failure, and the registry served the image to regcred's credential.
      await eventually('kubelet reports the image pulled', async () =>
        (await events(ns, first.metadata.name)).some((e) => e.reason === 'Pulled'),
      );
      expect((await events(ns, first.metadata.name)).filter((e) => e.reason === 'Failed')).to.deep.equal([]);
      const pulls = (await plane!.node!.registry.pulls()).slice(since);
      expect(pulls.some((p) => p.user === 'acme-puller' && p.repository === 'acme/app')).to.equal(true);
      expect(await serviceAccountEntries(ns), 'the entry came from the policy alone').to.deep.equal([]);
    });

    it('a namespace and a Deployment applied together in one file: the first Pod reaches Running without being recreated', async function () {
      // As GitOps applies them; no test policy in this namespace, regcred patches as usual.
      const ns = uniqueName('together');
      const dir = mkdtempSync(join(tmpdir(), 'regcred-race-'));
      const file = join(dir, 'app.yaml');
      writeFileSync(
        file,
        [
          { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { tenant: 'acme' } } },
          deployment(ns),
        ]
          .map((o) => dump(o))
          .join('---\n'),
      );
      const started = Date.now();
      try {
        await kubectl('apply', '-f', file);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      const first = await firstPod(ns);
      expect(first.spec.imagePullSecrets).to.deep.equal([{ name: CREDENTIAL }]);
      await runsWithoutBeingRecreated(ns, first);
      const seconds = (Date.now() - started) / 1000;
      const failedPulls = (await events(ns, first.metadata.name)).filter(
        (e) => e.reason === 'Failed' && e.message.startsWith('Failed to pull image'),
      ).length;
      this.test!.title +=
        ` (Running ${seconds.toFixed(1)} s after kubectl apply; failed pulls first: ${failedPulls})`;
    });
  });
});
