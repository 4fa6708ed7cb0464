/**
 * F8, time to first pull, on a control plane of its own with the local node and its private
 * registry (F1–F7 run without a node, so their figures stay comparable with earlier runs).
 *
 * Three phases over `namespaces` tenant namespaces each, one Deployment (one replica, the private
 * image, `imagePullPolicy: Always`) per namespace, created at `ratePerSecond`:
 * - baseline: the namespaces exist and regcred has synced them before the Deployments are created;
 * - together: each namespace and its Deployment are created back to back, as one GitOps apply
 *   does;
 * - together, with the injection policy (`config/admission`) installed: the same, where admission
 *   gives each Pod the pull secret whether or not regcred has patched the ServiceAccount yet.
 * Measured per namespace: from the first create (the Deployment's; together, the namespace's) to
 * the first Pod `Running`, seen through a watch on this process's clock. A first Pod created before regcred patched the namespace's `default`
 * ServiceAccount has no pull secret and never runs unless recreated: it is counted as a miss
 * (once kubelet reported its pull failure) and left out of the times. Between the phases the
 * first phase's namespaces are deleted, so that the node's Pod limit is never in the way.
 *
 * Run alone: `node hack/bench/pull.ts [--namespaces=100] [--rate=1]`; `npm run bench` runs it
 * after F1–F7.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { dump, loadAll } from 'js-yaml';
import {
  ControlPlane,
  nodePreflight,
  type Progress,
  stopOnInterrupt,
  streamProgress,
} from '../../controlplane/index.ts';
import { KubeClient } from '../../src/runtime/kube.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { Reflector } from '../../src/runtime/reflector.ts';
import { Store } from '../../src/runtime/store.ts';
import { awaitInjection, installAdmission } from '../../test/support/admission.ts';
import { flags } from '../args.ts';
import { parallel } from './floor.ts';
import { percentile, poll, readyAndLeading, startRegcred, stopRegcred } from './regcred.ts';
import type { Figure } from './report.ts';
import { table } from './report.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const run = promisify(execFile);
const SOURCE_NS = 'regcred-system';
const CREDENTIAL = 'bench-pull';
const TENANT_LABEL = 'bench.regcred.dev/pull';
const APP = 'bench-pull';
const PULL_FAILURES = new Set(['ErrImagePull', 'ImagePullBackOff']);

export interface PhaseResult {
  /** Deployment created → first Pod Running, ms, for every namespace that did not miss. */
  timesMs: number[];
  /** First Pods without the pull secret (they never run unless recreated). */
  misses: number;
  /** Namespaces whose first Pod neither ran nor failed its pull within the phase's patience. */
  unresolved: number;
}

export type PullResult =
  | { skipped: string }
  | {
      namespaces: number;
      ratePerSecond: number;
      baseline: PhaseResult;
      together: PhaseResult;
      withPolicy: PhaseResult;
    };

interface PodView {
  metadata: { name: string; namespace: string; resourceVersion: string; uid: string };
  hasSecret: boolean;
  running: boolean;
  pullFailed: boolean;
}

/** What the watch saw of one namespace's first Pod. */
interface First {
  uid: string;
  hasSecret: boolean;
  runningAt?: number;
  pullFailed: boolean;
}

export async function timeToFirstPull(o: {
  namespaces: number;
  ratePerSecond: number;
  progress: Progress;
}): Promise<PullResult> {
  const cause = await nodePreflight();
  if (cause) return { skipped: cause };
  const plane = await ControlPlane.start({ node: true, progress: o.progress, controllerManagerQps: 200 });
  const untie = stopOnInterrupt(plane);
  const abort = new AbortController();
  let regcred: Awaited<ReturnType<typeof startRegcred>> | undefined;
  try {
    const node = plane.node!;
    const admin = new KubeClient(plane.admin.kubeConfig);
    const kubectl = (args: string[], input?: string) => {
      const child = run(plane.binaries.kubectl, ['--kubeconfig', plane.admin.path, ...args]);
      if (input !== undefined) child.child.stdin?.end(input);
      return child;
    };
    // regcred's CRD, RBAC and namespace as users install them, without its Deployment: this
    // benchmark runs regcred as a process of its own, like F1–F7.
    const { stdout: rendered } = await kubectl(['kustomize', join(ROOT, 'config', 'default')]);
    const objects = (loadAll(rendered) as { kind: string }[]).filter((x) => x && x.kind !== 'Deployment');
    await kubectl(['apply', '-f', '-'], objects.map((x) => dump(x)).join('---\n'));
    const password = randomBytes(18).toString('base64url');
    await node.registry.setUser('bench', password);
    const image = await node.pushPrivateImage('bench/app', '1');
    await admin.create(`/api/v1/namespaces/${SOURCE_NS}/secrets`, {
      metadata: { name: CREDENTIAL },
      type: 'kubernetes.io/dockerconfigjson',
      stringData: { '.dockerconfigjson': node.registry.dockerConfigJson('bench', password) },
    });
    await admin.create('/apis/regcred.dev/v1alpha1/registrycredentials', {
      apiVersion: 'regcred.dev/v1alpha1',
      kind: 'RegistryCredential',
      metadata: { name: CREDENTIAL },
      spec: {
        source: { secretRef: { namespace: SOURCE_NS, name: CREDENTIAL } },
        namespaces: { selector: { matchLabels: { [TENANT_LABEL]: 'true' } } },
      },
    });
    const identity = await plane.serviceAccountConfig(SOURCE_NS, 'regcred', 12 * 3600);
    regcred = await startRegcred(identity.path, SOURCE_NS);
    await readyAndLeading(regcred);

    // The first Pod of each namespace, as a watch sees it.
    const firsts = new Map<string, First>();
    const pods = new Reflector<PodView>({
      name: 'pods',
      client: admin,
      path: '/api/v1/pods',
      labelSelector: `app=${APP}`,
      store: new Store(),
      logger: silentLogger(),
      transform: (raw) => {
        const p = raw as {
          metadata: PodView['metadata'];
          spec?: { imagePullSecrets?: { name: string }[] };
          status?: { phase?: string; containerStatuses?: { state?: { waiting?: { reason?: string } } }[] };
        };
        const reason = p.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? '';
        return {
          metadata: p.metadata,
          hasSecret: (p.spec?.imagePullSecrets ?? []).some((e) => e.name === CREDENTIAL),
          running: p.status?.phase === 'Running',
          pullFailed: PULL_FAILURES.has(reason),
        };
      },
    });
    pods.events$.subscribe((e) => {
      if (e.type === 'deleted') return;
      const p = e.object;
      let first = firsts.get(p.metadata.namespace);
      if (!first) {
        first = { uid: p.metadata.uid, hasSecret: p.hasSecret, pullFailed: false };
        firsts.set(p.metadata.namespace, first);
      }
      if (first.uid !== p.metadata.uid) return;
      if (p.running) first.runningAt ??= performance.now();
      if (p.pullFailed) first.pullFailed = true;
    });
    void pods.run(abort.signal);
    await pods.synced;

    const deployment = (namespace: string) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: APP, namespace },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: APP } },
        template: {
          metadata: { labels: { app: APP } },
          spec: {
            terminationGracePeriodSeconds: 0,
            containers: [{ name: 'app', image, imagePullPolicy: 'Always', args: ['sleep', '86400'] }],
          },
        },
      },
    });
    const createNamespace = (name: string) =>
      admin.create('/api/v1/namespaces', { metadata: { name, labels: { [TENANT_LABEL]: 'true' } } });
    const synced = async (count: number) =>
      poll(`regcred synced ${count} namespaces`, async () => {
        const rc = await admin.get<{ status?: { namespaces?: { synced?: number } } }>(
          `/apis/regcred.dev/v1alpha1/registrycredentials/${CREDENTIAL}`,
        );
        return rc.status?.namespaces?.synced === count;
      });

    const phase = async (prefix: string, together: boolean): Promise<PhaseResult> => {
      const names = Array.from({ length: o.namespaces }, (_, i) => `${prefix}-${i}`);
      if (!together) {
        await parallel(names, 10, createNamespace);
        await synced(names.length);
      }
      const created = new Map<string, number>();
      const t0 = performance.now();
      await Promise.all(
        names.map(async (ns, i) => {
          await new Promise((r) =>
            setTimeout(r, Math.max(0, (i * 1000) / o.ratePerSecond - (performance.now() - t0))),
          );
          created.set(ns, performance.now());
          // Together: back to back, as one apply of a namespace and its workload does.
          if (together) await createNamespace(ns);
          await admin.create(`/apis/apps/v1/namespaces/${ns}/deployments`, deployment(ns));
        }),
      );
      const resolved = (ns: string) => {
        const f = firsts.get(ns);
        return f !== undefined && (f.runningAt !== undefined || (f.pullFailed && !f.hasSecret));
      };
      await poll(`first Pods of ${prefix}-* resolved`, () => names.every(resolved) || undefined).catch(
        () => {},
      );
      const result: PhaseResult = { timesMs: [], misses: 0, unresolved: 0 };
      for (const ns of names) {
        const f = firsts.get(ns);
        if (f?.runningAt !== undefined) result.timesMs.push(f.runningAt - created.get(ns)!);
        else if (f && !f.hasSecret && f.pullFailed) result.misses++;
        else result.unresolved++;
      }
      // Free the node for the next phase: every namespace and its Pods gone.
      await parallel(names, 10, (ns) => admin.delete(`/api/v1/namespaces/${ns}`));
      await poll(`${prefix}-* namespaces gone`, async () => {
        const list = await admin.get<{ items: { metadata: { name: string } }[] }>('/api/v1/namespaces');
        return !list.items.some((n) => n.metadata.name.startsWith(`${prefix}-`)) || undefined;
      });
      return result;
    };

    o.progress.note(`F8 baseline: ${o.namespaces} namespaces synced first, then a Deployment each`);
    const baseline = await phase('pb', false);
    o.progress.note(`F8 together: ${o.namespaces} namespaces, each created with its Deployment`);
    const together = await phase('pt', true);
    o.progress.note('F8 with the injection policy: the same, with config/admission installed');
    await installAdmission(admin);
    // The policy takes effect asynchronously: wait until a Pod in a selected namespace gets it.
    await createNamespace('policy-probe');
    await poll('the probe namespace has its default ServiceAccount', () =>
      admin.get('/api/v1/namespaces/policy-probe/serviceaccounts/default').then(
        () => true,
        () => undefined,
      ),
    );
    await awaitInjection(admin, 'policy-probe', CREDENTIAL);
    const withPolicy = await phase('pp', true);
    return { namespaces: o.namespaces, ratePerSecond: o.ratePerSecond, baseline, together, withPolicy };
  } finally {
    abort.abort();
    if (regcred) await stopRegcred(regcred);
    untie();
    await plane.stop();
  }
}

/** F8's rows for the benchmark's table. */
export function pullFigures(r: PullResult): Figure[] {
  if ('skipped' in r)
    return [
      {
        id: 'F8',
        what: 'time to first pull',
        measured: `skipped: ${r.skipped}`,
        floor: '',
        ratio: '',
        target: '',
        met: undefined,
      },
    ];
  const stats = (p: PhaseResult) =>
    `${(percentile(p.timesMs, 50) / 1000).toFixed(2)} / ${(percentile(p.timesMs, 95) / 1000).toFixed(2)} / ${(Math.max(...p.timesMs) / 1000).toFixed(2)} s`;
  const missed = (p: PhaseResult) => `${p.misses}${p.unresolved ? ` (+${p.unresolved} unresolved)` : ''}`;
  return [
    {
      id: 'F8',
      what: `time to first pull, ${r.namespaces} namespaces: p50 / p95 / max`,
      measured: stats(r.together),
      floor: stats(r.baseline),
      ratio: '',
      target: '(reported)',
      met: undefined,
    },
    {
      id: 'F8b',
      what: 'first Pods that missed the credential',
      measured: missed(r.together),
      floor: missed(r.baseline),
      ratio: '',
      target: '(reported)',
      met: undefined,
    },
    {
      id: 'F8c',
      what: 'with the injection policy: p50 / p95 / max; misses',
      measured: `${stats(r.withPolicy)}; ${missed(r.withPolicy)}`,
      floor: '',
      ratio: '',
      target: '0 misses',
      met: r.withPolicy.misses === 0 && r.withPolicy.unresolved === 0,
    },
  ];
}

if (import.meta.main) {
  const values = flags(
    { namespaces: { type: 'string', default: '100' }, rate: { type: 'string', default: '1' } },
    `node hack/bench/pull.ts [--namespaces=100] [--rate=1]
  F8 alone: time to first pull on the local node; "floor" is the baseline where each namespace
  and its credential exist before its Deployment is created; F8c the same as F8 with the
  injection policy of config/admission installed
  namespaces  namespaces per phase (at least 50 for the README's figures)
  rate        Deployments created per second
`,
  );
  const result = await timeToFirstPull({
    namespaces: Number(values.namespaces),
    ratePerSecond: Number(values.rate),
    progress: streamProgress(process.stderr, '[bench] '),
  });
  process.stdout.write(`\n${table(pullFigures(result))}\n\n${JSON.stringify(result)}\n`);
}
