/**
 * The soak: a randomized, seeded schedule of changes and faults against regcred on a control plane
 * of its own, with the invariant checker running throughout and the operator's RSS and open file
 * descriptors sampled. `npm run soak -- --minutes=N` (hack/soak.ts) runs it; CI runs a short
 * fixed-seed form (test/integration/soak.test.ts).
 *
 * The schedule, one step at a time with short random gaps: namespace churn (create, delete),
 * ServiceAccount churn (selected by label), label flips, source rotations, spec edits (which
 * ServiceAccounts), a second RegistryCredential created and deleted, tenant tampering (a copy
 * deleted or overwritten, regcred's entry removed), and every 20 to 40 steps a fault (kube-apiserver or
 * etcd restarted, every connection cut, the API server unreachable, 429 throttling, the operator
 * SIGKILLed, every connection silenced until the health check finds it dead).
 * The same seed gives the same sequence of steps (how many fit in the minutes, and which object a
 * tampering step finds to tamper with, depend on the world's timing).
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FaultProxy, kubeconfigVia, throttleServiceAccount } from '../../controlplane/faults.ts';
import { ControlPlane } from '../../controlplane/index.ts';
import { KubeClient, PING_INTERVAL_MS } from '../../src/runtime/kube.ts';
import { Checker, type Problem, type Violation } from './checker.ts';
import { sourceData } from './credential-cases.ts';
import { startRegcred } from './processes.ts';
import { Supervised } from './supervisor.ts';
import { eventually } from './wait.ts';
import { CONFIG_DEFAULT } from './world.ts';

const run = promisify(execFile);
const SA = { namespace: 'regcred-system', name: 'regcred' };
const SOURCE = { namespace: 'regcred-system', name: 'soak-pull' };
const RCS = '/apis/regcred.dev/v1alpha1/registrycredentials';
const BOUND_MS = 60_000;

export interface SoakOptions {
  minutes: number;
  seed: number;
  /** Tenant namespaces at the start (default 100). */
  namespaces?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface SoakReport {
  seed: number;
  minutes: number;
  actions: Record<string, number>;
  faults: Record<string, number>;
  violations: Violation[];
  /** The longest any problem persisted before it went away, and which. */
  worstConvergenceMs: number;
  worst: Problem | undefined;
  /**
   * The operator's RSS (MiB) and open file descriptors: first and last sample of the process that
   * ran longest (a restart starts a new process), over `minutes`; `maxMiB` is the largest sample of
   * any process.
   */
  rss: { startMiB: number; endMiB: number; maxMiB: number; minutes: number };
  fds: { start: number; end: number };
  operatorRestarts: number;
  checkerRounds: { ok: number; failed: number };
}

/** mulberry32: a small seeded PRNG, enough for a schedule. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function procSample(pid: number | undefined): { rssMiB: number; fds: number } | undefined {
  if (!pid) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    return { rssMiB: Math.round(kb / 102.4) / 10, fds: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return undefined;
  }
}

/** The entry whose cumulative weight first exceeds `r` (0 ≤ r < total weight); pure. */
export function weighted<T extends [string, number, ...unknown[]]>(entries: readonly T[], r: number): T {
  let left = r;
  for (const e of entries) {
    left -= e[1];
    if (left < 0) return e;
  }
  return entries[entries.length - 1]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function soak(options: SoakOptions): Promise<SoakReport> {
  const { minutes, seed } = options;
  const log = options.log ?? (() => {});
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
  const actions: Record<string, number> = {};
  const faults: Record<string, number> = {};
  const count = (into: Record<string, number>, name: string) => {
    into[name] = (into[name] ?? 0) + 1;
  };

  const plane = await ControlPlane.start({ controllerManagerQps: 100 });
  const admin = new KubeClient(plane.admin.kubeConfig);
  let proxy: FaultProxy | undefined;
  let checker: Checker | undefined;
  let operator: Supervised | undefined;
  let failed = true;
  try {
    await run(plane.binaries.kubectl, ['--kubeconfig', plane.admin.path, 'apply', '-k', CONFIG_DEFAULT]);
    await eventually('the RegistryCredential API is served', () => admin.get(RCS).then(() => true));
    proxy = await FaultProxy.start({ host: '127.0.0.1', port: plane.ports.apiserver });
    const direct = await plane.serviceAccountConfig(SA.namespace, SA.name, 4 * 3600);
    const kubeconfig = await kubeconfigVia(
      direct.path,
      proxy.url,
      join(plane.dir, 'regcred-soak.kubeconfig'),
    );
    let password = 0;
    await admin.create(`/api/v1/namespaces/${SOURCE.namespace}/secrets`, {
      metadata: { name: SOURCE.name },
      type: 'kubernetes.io/dockerconfigjson',
      data: sourceData(`pw-${password}`),
    });

    // The world: namespaces with a builder ServiceAccount carrying someone else's entry.
    const live = new Set<string>();
    let nsCounter = 0;
    const createNamespace = async () => {
      const ns = `soak-${nsCounter++}`;
      const labels: Record<string, string> = { tenant: 'a' };
      if (nsCounter % 3 === 0) labels.group = 'b';
      await admin.create('/api/v1/namespaces', { metadata: { name: ns, labels } });
      await admin.create(`/api/v1/namespaces/${ns}/serviceaccounts`, {
        metadata: { name: 'builder' },
        imagePullSecrets: [{ name: 'theirs' }],
      });
      live.add(ns);
    };
    const initial = options.namespaces ?? 100;
    for (let i = 0; i < initial; i += 20)
      await Promise.all(Array.from({ length: Math.min(20, initial - i) }, () => createNamespace()));
    await eventually(
      'every namespace has its default ServiceAccount',
      async () =>
        (
          await admin.get<{ items: unknown[] }>('/api/v1/serviceaccounts', {
            fieldSelector: 'metadata.name=default',
          })
        ).items.length > initial,
      { timeoutMs: 300_000, intervalMs: 1000 },
    );
    const credential = (name: string, spec: Record<string, unknown>) =>
      admin.create(RCS, {
        apiVersion: 'regcred.dev/v1alpha1',
        kind: 'RegistryCredential',
        metadata: { name },
        spec: { source: { secretRef: SOURCE }, ...spec },
      });
    await credential('soak-a', {
      namespaces: { selector: { matchLabels: { tenant: 'a' } } },
      serviceAccounts: { names: ['default', 'builder'], selector: { matchLabels: { pulls: 'yes' } } },
    });
    let bExists = false;

    checker = new Checker(admin, {
      boundMs: BOUND_MS,
      intervalMs: 1000,
      onViolation: (v) => log(`VIOLATION ${v.kind} ${v.object} at ${v.at}: ${v.detail}`),
    });
    checker.start();
    operator = new Supervised(() => {
      const p = startRegcred(kubeconfig, ['--health-probe-bind-address=0', '--concurrency=16']);
      void plane.track('regcred-soak', p.child.pid!);
      return p;
    });
    await checker.converged(300_000);
    // Every process the supervisor ran, sampled while current; the longest-lived one is reported.
    // A restarted process counts from 30 s after it was first seen (it starts near 0 MiB); the
    // first one has already converged the world when sampling begins.
    type Sample = NonNullable<ReturnType<typeof procSample>>;
    const lives = new Map<number, { first: Sample; last: Sample; firstAt: number; lastAt: number }>();
    const seen = new Map<number, number>();
    let maxMiB = 0;
    const supervised = operator;
    const firstPid = supervised.current.child.pid;
    const sampleOperator = () => {
      const pid = supervised.current.child.pid;
      const sample = pid === undefined ? undefined : procSample(pid);
      if (pid === undefined || !sample) return;
      maxMiB = Math.max(maxMiB, sample.rssMiB);
      const now = Date.now();
      if (!seen.has(pid)) seen.set(pid, now);
      if (pid !== firstPid && now - seen.get(pid)! < 30_000) return;
      const life = lives.get(pid);
      if (life) Object.assign(life, { last: sample, lastAt: now });
      else lives.set(pid, { first: sample, last: sample, firstAt: now, lastAt: now });
    };
    sampleOperator();
    log(`seed ${seed}: ${initial} namespaces converged; soaking for ${minutes} min`);

    const saCounters = { n: 0 };
    const extraAccounts: string[] = [];
    const copyNamespaces = async (name: string) =>
      (
        await admin.get<{ items: { metadata: { namespace: string } }[] }>('/api/v1/secrets', {
          labelSelector: `regcred.dev/credential=${name}`,
        })
      ).items.map((s) => s.metadata.namespace);

    const steps: [string, number, () => Promise<void>][] = [
      ['namespace-create', 3, createNamespace],
      [
        'namespace-delete',
        2,
        async () => {
          if (live.size <= initial / 2) return createNamespace();
          const ns = pick([...live]);
          live.delete(ns);
          await admin.delete(`/api/v1/namespaces/${ns}`);
        },
      ],
      [
        'serviceaccount-create',
        3,
        async () => {
          const ns = pick([...live]);
          const name = `extra-${saCounters.n++}`;
          await admin.create(`/api/v1/namespaces/${ns}/serviceaccounts`, {
            metadata: { name, labels: { pulls: 'yes' } },
          });
          extraAccounts.push(`${ns}/${name}`);
        },
      ],
      [
        'serviceaccount-delete',
        2,
        async () => {
          const key = extraAccounts.splice(Math.floor(random() * extraAccounts.length), 1)[0];
          if (!key) return;
          const [ns, name] = key.split('/') as [string, string];
          await admin.delete(`/api/v1/namespaces/${ns}/serviceaccounts/${name}`).catch(() => {});
        },
      ],
      [
        'label-flip',
        3,
        async () => {
          const ns = pick([...live]);
          const current = await admin.get<{ metadata: { labels?: Record<string, string> } }>(
            `/api/v1/namespaces/${ns}`,
          );
          const tenant = current.metadata.labels?.tenant === 'a' ? null : 'a';
          await admin.mergePatch(`/api/v1/namespaces/${ns}`, { metadata: { labels: { tenant } } });
        },
      ],
      [
        'source-rotation',
        2,
        async () => {
          await admin.mergePatch(`/api/v1/namespaces/${SOURCE.namespace}/secrets/${SOURCE.name}`, {
            data: sourceData(`pw-${++password}`),
          });
        },
      ],
      [
        'spec-edit',
        1,
        async () => {
          const names = random() < 0.5 ? ['default'] : ['default', 'builder'];
          await admin.mergePatch(`${RCS}/soak-a`, { spec: { serviceAccounts: { names } } });
        },
      ],
      [
        'credential-create-delete',
        1,
        async () => {
          if (bExists) await admin.delete(`${RCS}/soak-b`);
          else
            await credential('soak-b', {
              secretName: 'soak-b',
              namespaces: { selector: { matchLabels: { group: 'b' } } },
            });
          bExists = !bExists;
        },
      ],
      [
        'tamper',
        2,
        async () => {
          const namespaces = await copyNamespaces('soak-a');
          if (namespaces.length === 0) return;
          const ns = pick(namespaces);
          const how = pick(['delete-copy', 'overwrite-copy', 'remove-entry'] as const);
          if (how === 'delete-copy')
            await admin.delete(`/api/v1/namespaces/${ns}/secrets/soak-a`).catch(() => {});
          else if (how === 'overwrite-copy')
            await admin
              .mergePatch(`/api/v1/namespaces/${ns}/secrets/soak-a`, { data: sourceData('tampered') })
              .catch(() => {});
          else {
            const path = `/api/v1/namespaces/${ns}/serviceaccounts/default`;
            const sa = await admin
              .get<{ imagePullSecrets?: { name: string }[] }>(path)
              .catch(() => undefined);
            if (sa)
              await admin
                .request('PUT', path, {
                  body: { ...sa, imagePullSecrets: sa.imagePullSecrets?.filter((e) => e.name !== 'soak-a') },
                })
                .catch(() => {});
          }
        },
      ],
    ];
    const faultSteps: [string, () => Promise<void>][] = [
      [
        'kube-apiserver-restart',
        async () => {
          await plane.stopApiserver();
          await plane.startApiserver();
        },
      ],
      [
        'etcd-restart',
        async () => {
          await plane.stopEtcd();
          await plane.startEtcd();
        },
      ],
      ['connections-cut', async () => void proxy!.cutAll()],
      [
        'unreachable',
        async () => {
          proxy!.refuse();
          proxy!.cutAll();
          await sleep(between(5_000, 30_000));
          proxy!.heal();
        },
      ],
      [
        'throttled-429',
        async () => {
          const remove = await throttleServiceAccount(admin, 'soak-throttled', SA, [
            { apiGroup: '', resources: ['secrets', 'serviceaccounts'] },
          ]);
          await sleep(between(5_000, 15_000));
          await remove();
        },
      ],
      [
        'operator-sigkill',
        async () => {
          const p = operator!.current;
          p.child.kill('SIGKILL');
          await p.exited;
          await eventually('the operator was restarted', () => operator!.current !== p);
        },
      ],
      [
        'connections-silenced',
        async () => {
          proxy!.silence();
          proxy!.heal();
          await sleep(2 * PING_INTERVAL_MS + 5_000); // past the connection health check
        },
      ],
    ];
    const weights = steps.reduce((n, [, w]) => n + w, 0);
    const deadline = Date.now() + minutes * 60_000;
    // Faults come after a drawn number of steps, not at drawn times: the same seed gives the same
    // sequence of steps, however long each takes.
    let stepsToFault = between(15, 30);
    while (Date.now() < deadline) {
      if (--stepsToFault <= 0) {
        const [name, fault] = pick(faultSteps);
        count(faults, name);
        log(`fault ${name}`);
        checker.faultBegan();
        await fault();
        checker.faultEnded();
        stepsToFault = between(20, 40);
      } else {
        const step = weighted(steps, random() * weights);
        count(actions, step[0]);
        await step[2]().catch((err: unknown) => log(`action ${step[0]} failed: ${String(err)}`));
      }
      sampleOperator();
      await sleep(between(200, 1500));
    }
    log('schedule done; awaiting a converged world');
    await checker.converged(BOUND_MS + 60_000);
    sampleOperator();
    const longest = [...lives.values()].sort((a, b) => b.lastAt - b.firstAt - (a.lastAt - a.firstAt))[0];
    failed = checker.violations.length > 0;
    return {
      seed,
      minutes,
      actions,
      faults,
      violations: [...checker.violations],
      worstConvergenceMs: checker.worstMs,
      worst: checker.worst,
      rss: {
        startMiB: longest?.first.rssMiB ?? 0,
        endMiB: longest?.last.rssMiB ?? 0,
        maxMiB,
        minutes: longest ? Math.round((longest.lastAt - longest.firstAt) / 6000) / 10 : 0,
      },
      fds: { start: longest?.first.fds ?? 0, end: longest?.last.fds ?? 0 },
      operatorRestarts: operator.restarts,
      checkerRounds: { ...checker.rounds },
    };
  } finally {
    await checker?.stop();
    await operator?.stop();
    await proxy?.close();
    const kept = await plane.stop({ keepLogs: failed });
    if (kept) log(`logs kept in ${kept}`);
  }
}
