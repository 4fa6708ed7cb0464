/**
 * The Helm chart (charts/regcred) against config/, its one source: with default values it renders
 * the objects `kubectl kustomize config/default` does, and its values schema refuses what would not
 * work; Helm 3 renders and refuses exactly as Helm 4 does. That the chart installs, upgrades and
 * uninstalls a running operator on the real node, with either Helm, is in-cluster.test.ts. (This file's name sorts after that one's: there, helm's first build runs
 * while the kustomize install is tested; here it is then only looked up.)
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { loadAll } from 'js-yaml';
import { resolveHelm } from '../../controlplane/binaries.ts';
import { streamProgress } from '../../controlplane/index.ts';
import { CONFIG_DEFAULT, kubectl } from '../support/world.ts';

const run = promisify(execFile);
const CHART = join(import.meta.dirname, '..', '..', 'charts', 'regcred');
const CONFIG = join(import.meta.dirname, '..', '..', 'config');

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: Record<string, unknown>;
  [key: string]: unknown;
}

/** Labels Helm charts conventionally add; config/ has none of them. */
const HELM_LABELS = [
  'app.kubernetes.io/instance',
  'app.kubernetes.io/managed-by',
  'app.kubernetes.io/version',
  'helm.sh/chart',
];

const key = (m: Manifest) => `${m.kind} ${m.metadata.namespace ?? ''}/${m.metadata.name}`;

function byKey(manifests: Manifest[]): Record<string, Manifest> {
  return Object.fromEntries(manifests.filter(Boolean).map((m) => [key(m), m]));
}

/** `helm template` of the chart as release regcred in regcred-system. */
const templateWith = async (helm: string, args: string[]) =>
  (await run(helm, ['template', 'regcred', CHART, '--namespace', 'regcred-system', ...args])).stdout;

/** The error helm prints when the values are refused, or '' when it renders. */
const refusalOf = (helm: string, args: string[]) =>
  templateWith(helm, args).then(
    () => '',
    (err: { stderr?: string }) => err.stderr ?? 'failed',
  );

/** Values the schema refuses, and what the refusal must name. */
const REFUSED: [string[], RegExp][] = [
  [['--set', 'replicaCount=two'], /replicaCount/],
  [['--set', 'image.pullPolicy=Sometimes'], /pullPolicy/],
  [['--set', 'imagee.tag=x'], /imagee/],
  [['--set', 'sourceNamespaces={Not_A_Namespace}'], /sourceNamespaces/],
  [['--set', 'image.digest=latest'], /digest/],
  // Two replicas without leader election would be two writers.
  [['--set', 'leaderElection.enabled=false'], /replicaCount/],
];

describe('the Helm chart', function () {
  this.timeout(20 * 60_000);
  let helm: string;
  const template = (...args: string[]) => templateWith(helm, args);
  const rendered = async (...args: string[]) => byKey(loadAll(await template(...args)) as Manifest[]);
  const refusal = (...args: string[]) => refusalOf(helm, args);

  before(async () => {
    helm = await resolveHelm({ progress: streamProgress() });
  });

  it('passes helm lint', async () => {
    const { stdout } = await run(helm, ['lint', '--strict', CHART]);
    expect(stdout).to.match(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('renders with default values exactly the objects of kubectl kustomize config/default, but the Namespace', async () => {
    const chart = await rendered();
    const kustomized = byKey(loadAll(await kubectl('kustomize', CONFIG_DEFAULT)) as Manifest[]);
    // Helm creates the release namespace (--create-namespace) and never owns it.
    const namespace = kustomized['Namespace /regcred-system'];
    expect(namespace).to.exist;
    delete kustomized['Namespace /regcred-system'];
    for (const m of Object.values(chart)) {
      for (const label of HELM_LABELS) {
        expect(m.metadata.labels?.[label], `${key(m)} ${label}`).to.be.a('string');
        delete m.metadata.labels?.[label];
      }
      if (m.metadata.labels && Object.keys(m.metadata.labels).length === 0) delete m.metadata.labels;
    }
    // The one Helm-only annotation: keep the CRD on helm uninstall (README "Helm").
    const crd = chart['CustomResourceDefinition /registrycredentials.regcred.dev']!;
    expect(crd.metadata.annotations).to.deep.equal({ 'helm.sh/resource-policy': 'keep' });
    delete crd.metadata.annotations;
    expect(Object.keys(chart).sort()).to.deep.equal(Object.keys(kustomized).sort());
    for (const k of Object.keys(kustomized)) expect(chart[k], k).to.deep.equal(kustomized[k]);
  });

  it('sets the image, replicas, resources, source namespaces and pull Secrets from values', async () => {
    const objects = await rendered(
      '--set',
      'image.repository=registry.example.com/regcred',
      '--set',
      'image.tag=9.9.9',
      '--set',
      'replicaCount=3',
      '--set',
      'resources.limits.memory=1Gi',
      '--set',
      'sourceNamespaces={team-a,team-b}',
      '--set',
      'imagePullSecrets[0].name=pull',
      '--set',
      'logLevel=debug',
    );
    const deployment = objects['Deployment regcred-system/regcred'] as unknown as {
      spec: {
        replicas: number;
        template: {
          spec: {
            imagePullSecrets: { name: string }[];
            containers: { image: string; args: string[]; resources: { limits: Record<string, string> } }[];
          };
        };
      };
    };
    const pod = deployment.spec.template.spec;
    expect(deployment.spec.replicas).to.equal(3);
    expect(pod.containers[0]!.image).to.equal('registry.example.com/regcred:9.9.9');
    expect(pod.containers[0]!.resources.limits.memory).to.equal('1Gi');
    expect(pod.containers[0]!.args).to.include.members([
      '--source-namespaces=team-a,team-b',
      '--log-level=debug',
    ]);
    expect(pod.imagePullSecrets).to.deep.equal([{ name: 'pull' }]);
    const digest = `sha256:${'a'.repeat(64)}`;
    const pinned = await rendered('--set', `image.digest=${digest}`);
    expect(
      (
        pinned['Deployment regcred-system/regcred'] as unknown as {
          spec: { template: { spec: { containers: { image: string }[] } } };
        }
      ).spec.template.spec.containers[0]!.image,
    ).to.equal(`ghcr.io/regcred/regcred@${digest}`);
  });

  it('leaves out metrics, the budget and the CRD when they are turned off', async () => {
    const objects = await rendered(
      '--set',
      'metrics.enabled=false',
      '--set',
      'podDisruptionBudget.enabled=false',
      '--set',
      'crds.install=false',
    );
    expect(Object.keys(objects).sort()).to.deep.equal([
      'ClusterRole /regcred-manager',
      'ClusterRoleBinding /regcred-manager',
      'Deployment regcred-system/regcred',
      'Role regcred-system/regcred-leader-election',
      'RoleBinding regcred-system/regcred-leader-election',
      'ServiceAccount regcred-system/regcred',
    ]);
    const args = (
      objects['Deployment regcred-system/regcred'] as unknown as {
        spec: { template: { spec: { containers: { args: string[]; ports: { name: string }[] }[] } } };
      }
    ).spec.template.spec.containers[0]!;
    expect(args.args.filter((a) => a.startsWith('--metrics'))).to.deep.equal([]);
    expect(args.ports.map((p) => p.name)).to.deep.equal(['health']);
  });

  it('renders the optional parts of config/ (admission, copy guard, alerts) as kubectl kustomize does, when turned on', async () => {
    const base = await rendered();
    const on = await rendered(
      '--set',
      'admission.enabled=true',
      '--set',
      'copyGuard.enabled=true',
      '--set',
      'prometheusRule.enabled=true',
    );
    const optional = Object.fromEntries(Object.entries(on).filter(([k]) => !(k in base)));
    const kustomized: Record<string, Manifest> = {};
    for (const part of ['admission', 'copy-guard', 'prometheus']) {
      Object.assign(kustomized, byKey(loadAll(await kubectl('kustomize', join(CONFIG, part))) as Manifest[]));
    }
    expect(Object.keys(optional).sort()).to.deep.equal(Object.keys(kustomized).sort());
    for (const k of Object.keys(kustomized))
      expect(optional[k], `${k}: copy config/ into charts/regcred/files/`).to.deep.equal(kustomized[k]);
  });

  it("names the release's namespace and ServiceAccount in the copy guard and the alerts, and adds the alerts' labels", async () => {
    const text = await run(helm, [
      'template',
      'ops',
      CHART,
      '--namespace',
      'platform',
      '--set',
      'copyGuard.enabled=true',
      '--set',
      'prometheusRule.enabled=true',
      '--set',
      'prometheusRule.labels.release=kube-prometheus-stack',
    ]).then((r) => r.stdout);
    const objects = byKey(loadAll(text) as Manifest[]);
    expect(JSON.stringify(objects['ValidatingAdmissionPolicy /regcred-copy-guard'])).to.contain(
      'system:serviceaccount:platform:ops-regcred',
    );
    expect(JSON.stringify(objects['ValidatingAdmissionPolicy /regcred-copy-guard'])).not.to.contain(
      'regcred-system',
    );
    const rule = objects['PrometheusRule platform/regcred']!;
    expect(rule.metadata.labels).to.deep.equal({
      'app.kubernetes.io/name': 'regcred',
      release: 'kube-prometheus-stack',
    });
  });

  it('refuses values its schema does not allow, naming them', async () => {
    for (const [args, names] of REFUSED) expect(await refusal(...args), args.join(' ')).to.match(names);
    expect(await refusal('--set', 'leaderElection.enabled=false', '--set', 'replicaCount=1')).to.equal('');
  });
});

describe('the Helm chart with Helm 3', function () {
  this.timeout(20 * 60_000);
  let helm3: string;
  let helm4: string;

  before(async () => {
    helm4 = await resolveHelm({ progress: streamProgress() });
    helm3 = await resolveHelm({ progress: streamProgress() }, 3);
  });

  it('is Helm 3, and passes its helm lint', async () => {
    expect((await run(helm3, ['version', '--short'])).stdout).to.match(/^v3\./);
    const { stdout } = await run(helm3, ['lint', '--strict', CHART]);
    expect(stdout).to.match(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  const VALUES: string[][] = [
    [],
    ['--set', 'image.repository=registry.example.com/regcred', '--set', 'image.tag=9.9.9'],
    ['--set', `image.digest=sha256:${'a'.repeat(64)}`],
    ['--set', 'replicaCount=3', '--set', 'sourceNamespaces={team-a,team-b}', '--set', 'logLevel=debug'],
    [
      '--set',
      'metrics.enabled=false',
      '--set',
      'podDisruptionBudget.enabled=false',
      '--set',
      'crds.install=false',
    ],
    [
      '--set',
      'admission.enabled=true',
      '--set',
      'copyGuard.enabled=true',
      '--set',
      'prometheusRule.enabled=true',
    ],
    ['--set', 'leaderElection.enabled=false', '--set', 'replicaCount=1'],
  ];
  it('renders the objects Helm 4 renders, for default values and every kind of value', async () => {
    for (const args of VALUES) {
      const [three, four] = await Promise.all([templateWith(helm3, args), templateWith(helm4, args)]);
      const objects = byKey(loadAll(three) as Manifest[]);
      expect(Object.keys(objects), args.join(' ') || 'default values').to.have.length.above(5);
      expect(objects, args.join(' ') || 'default values').to.deep.equal(byKey(loadAll(four) as Manifest[]));
    }
  });

  it('refuses the values Helm 4 refuses, naming them', async () => {
    for (const [args, names] of REFUSED) expect(await refusalOf(helm3, args), args.join(' ')).to.match(names);
  });
});
