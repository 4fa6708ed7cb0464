/**
 * `npm run bench`: regcred against the API server's own write floor, in one run, on a fresh local
 * control plane. See README "Performance" for what each figure means.
 *
 * Phases: setup (tenant and floor namespaces of the same shape, unrelated Secrets, the source);
 * the floor (an ideal client: fan-out, rotation, new namespaces under churn) before regcred starts;
 * then regcred, as a separate process started with exactly the image's command line: fan-out (F1,
 * F5, and its CPU per write F9), rotation (F2), new namespaces under churn (F3), idle (F4), memory
 * (F6), restart (F7).
 * Before each timed phase the control plane is left to settle (see `settle`).
 * Everything is observed through the API (watches, kube-apiserver's apiserver_request_total,
 * /proc for RSS), never through regcred's internals.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import {
  ControlPlane,
  kubernetesVersion,
  stopOnInterrupt,
  streamProgress,
} from '../../controlplane/index.ts';
import { parseSourceSecret } from '../../src/regcred/credential.ts';
import { KubeClient } from '../../src/runtime/kube.ts';
import { apiserverRequestCounts, countDelta } from '../../test/support/apiserver-metrics.ts';
import { flags } from '../args.ts';
import { FLOOR_CONCURRENCY, floorFanOut, floorOwner, floorReactor, floorRotate, parallel } from './floor.ts';
import { Observer } from './observer.ts';
import { type PullResult, pullFigures, timeToFirstPull } from './pull.ts';
import {
  imageNodeFlags,
  percentile,
  poll,
  type Regcred,
  readyAndLeading,
  startRegcred,
  stopRegcred,
} from './regcred.ts';
import { convergencePlot, type Figure, table, thin } from './report.ts';

const ROOT = join(dirname(new URL(import.meta.url).pathname), '..', '..');
const run = promisify(execFile);
const progress = streamProgress(process.stderr, '[bench] ');
const COPY = 'bench-pull';
const SOURCE_NS = 'regcred-system';

const USAGE = `npm run bench -- [--namespaces=1000] [--service-accounts=2] [--unrelated-secrets=20000]
                       [--churn=10] [--churn-namespaces=100] [--idle=600]
                       [--pull-namespaces=100] [--pull-rate=1] [--out=results]
  namespaces         tenant namespaces (the floor gets as many of its own)
  service-accounts   ServiceAccounts per namespace besides default
  unrelated-secrets  Secrets in other namespaces that regcred must not cache
  churn              new namespaces per second during F3; churn-namespaces: how many
  idle               seconds of idle for F4
  pull-namespaces    namespaces per phase of F8 (time to first pull, on the local node, first);
                     0 leaves F8 out; F8 alone: node hack/bench/pull.ts
  pull-rate          Deployments created per second in F8
`;
const opts = flags(
  {
    namespaces: { type: 'string', default: '1000' },
    'service-accounts': { type: 'string', default: '2' },
    'unrelated-secrets': { type: 'string', default: '20000' },
    churn: { type: 'string', default: '10' },
    'churn-namespaces': { type: 'string', default: '100' },
    idle: { type: 'string', default: '600' },
    'pull-namespaces': { type: 'string', default: '100' },
    'pull-rate': { type: 'string', default: '1' },
    out: { type: 'string', default: join(ROOT, 'results') },
  },
  USAGE,
);
const N = Number(opts.namespaces);
const K = Number(opts['service-accounts']);
const UNRELATED = Number(opts['unrelated-secrets']);
const CHURN_RATE = Number(opts.churn);
const CHURN_N = Number(opts['churn-namespaces']);
const IDLE_S = Number(opts.idle);
const ACCOUNTS = ['default', ...Array.from({ length: K }, (_, i) => `sa-${i + 1}`)];

const started = performance.now();
const elapsed = () => `${Math.round((performance.now() - started) / 1000)}s`;

// --- helpers ----------------------------------------------------------------------------------------

function dockerConfig(password: string): string {
  const auth = Buffer.from(`bench:${password}`).toString('base64');
  return JSON.stringify({ auths: { 'registry.bench.example': { username: 'bench', password, auth } } });
}

/** The copy data regcred writes for a credential: its canonical form, so the floor writes the same bytes. */
function canonical(config: string): string {
  const parsed = parseSourceSecret({
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': Buffer.from(config).toString('base64') },
  });
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.dataBase64;
}

async function apiCounts(plane: ControlPlane): Promise<Map<string, number>> {
  return apiserverRequestCounts((await plane.get('/metrics')).body);
}

const REGCRED_USER = 'system:serviceaccount:regcred-system:regcred';
const FLOOR_USER = `system:serviceaccount:${SOURCE_NS}:bench-floor`;
/**
 * The users kube-apiserver audits: both, so that auditing (which costs the API server CPU on
 * every request) weighs on regcred and the floor alike.
 */
const AUDITED = [REGCRED_USER, FLOOR_USER];

interface AuditEvent {
  stage: string;
  verb: string;
  user: { username: string };
  requestReceivedTimestamp: string;
  stageTimestamp: string;
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
}

/** One user's audit records (every stage) of requests received between two wall-clock times. */
function auditEventsOf(plane: ControlPlane, user: string, from: number, to: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (const line of readFileSync(plane.auditLogPath, 'utf8').split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as AuditEvent;
    if (e.user.username !== user) continue;
    const at = Date.parse(e.requestReceivedTimestamp);
    if (at >= from && at <= to) out.push(e);
  }
  return out;
}

/**
 * One user's requests between two wall-clock times, from kube-apiserver's audit log, by
 * `verb resource[/subresource]`; reads of one named object in a namespace are counted apart as
 * `get-namespaced`.
 */
function requestsOf(plane: ControlPlane, user: string, from: number, to: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of auditEventsOf(plane, user, from, to)) {
    // One record per request: its completion, or for a watch, its start.
    if (e.stage !== 'ResponseComplete' && !(e.verb === 'watch' && e.stage === 'ResponseStarted')) continue;
    if (e.verb === 'watch' && e.stage === 'ResponseComplete') continue;
    const r = e.objectRef ?? {};
    const key = `${e.verb} ${r.resource}${r.subresource ? `/${r.subresource}` : ''}`;
    out[key] = (out[key] ?? 0) + 1;
    if (e.verb === 'get' && r.namespace && r.name && r.resource !== 'leases')
      out['get-namespaced'] = (out['get-namespaced'] ?? 0) + 1;
  }
  return out;
}

/**
 * How one user's writes to Secrets and ServiceAccounts fared inside kube-apiserver between two
 * wall-clock times, from the audit log: each write's time from received to answered (p50, p99),
 * and how many were in the API server at once on average (their summed times over the span from
 * the first received to the last answered). A client with 32 in flight shows at most 32 here: the
 * part of each request's time outside the audit's window (on the way, in the API server's
 * connection handling) does not count; measured, both clients show ≈ 10.
 */
function serverTimes(
  plane: ControlPlane,
  user: string,
  from: number,
  to: number,
): { writes: number; p50Ms: number; p99Ms: number; inFlight: number } {
  // Date.parse keeps milliseconds only; the audit log has microseconds.
  const exact = (t: string) =>
    Date.parse(t) + Number(/\.(\d+)Z$/.exec(t)?.[1]?.padEnd(6, '0').slice(3, 6) ?? 0) / 1000;
  const times: number[] = [];
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  for (const e of auditEventsOf(plane, user, from, to)) {
    if (e.stage !== 'ResponseComplete') continue;
    if (!['create', 'patch', 'update', 'delete'].includes(e.verb)) continue;
    if (!['secrets', 'serviceaccounts'].includes(e.objectRef?.resource ?? '')) continue;
    const at = exact(e.requestReceivedTimestamp);
    const answered = exact(e.stageTimestamp);
    times.push(answered - at);
    first = Math.min(first, at);
    last = Math.max(last, answered);
  }
  const total = times.reduce((a, b) => a + b, 0);
  return {
    writes: times.length,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    inFlight: times.length && last > first ? total / (last - first) : 0,
  };
}

const sum = (d: Record<string, number>, pattern: RegExp) =>
  Object.entries(d).reduce((n, [k, v]) => n + (pattern.test(k) ? v : 0), 0);
const WRITE = '(create|update|patch|delete|POST|PUT|PATCH|DELETE|APPLY)';

/** CPU seconds (user + system) used so far by each process of interest. */
function cpuSeconds(plane: ControlPlane, regcredPid?: number): Record<string, number> {
  const ticks = (pid: number) => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  };
  const out: Record<string, number> = {};
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmd.includes(plane.dir)) continue;
      const name = cmd.split('\0')[0]!.split('/').pop()!;
      if (['kube-apiserver', 'etcd', 'kube-controller-manager'].includes(name))
        out[name] = ticks(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  if (regcredPid) out.regcred = ticks(regcredPid);
  const self = process.cpuUsage();
  out.bench = (self.user + self.system) / 1e6;
  return out;
}

function cpuDelta(a: Record<string, number>, b: Record<string, number>, ms: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(b))
    out[k] = `${(v - (a[k] ?? 0)).toFixed(2)} s (${(((v - (a[k] ?? 0)) / (ms / 1000)) * 100).toFixed(0)} %)`;
  return out;
}

/**
 * Waits until the control plane (and regcred, if running) has been quiet for two seconds in a row
 * (under 20 % of a core together), so that a timed phase does not pay for the previous one's
 * aftermath (the controller-manager's and the API server's background work after a burst of
 * writes). Gives up after two minutes and says so. Returns the milliseconds waited.
 */
async function settle(plane: ControlPlane, what: string, regcredPid?: number): Promise<number> {
  const t0 = performance.now();
  const busy = (c: Record<string, number>) =>
    Object.entries(c).reduce((n, [k, v]) => n + (k === 'bench' ? 0 : v), 0);
  let quiet = 0;
  let last = busy(cpuSeconds(plane, regcredPid));
  while (quiet < 2) {
    if (performance.now() - t0 > 120_000) {
      progress.note(`control plane still busy before ${what}; measuring anyway`);
      break;
    }
    await new Promise((r) => setTimeout(r, 1000));
    const now = busy(cpuSeconds(plane, regcredPid));
    quiet = now - last < 0.2 ? quiet + 1 : 0;
    last = now;
  }
  return performance.now() - t0;
}

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

/**
 * The floor's client: a ServiceAccount like regcred's, so that API Priority and Fairness treats
 * both alike (admin requests are exempt from it; ServiceAccounts' go through workload-low).
 */
async function floorClient(plane: ControlPlane, admin: KubeClient): Promise<KubeClient> {
  await admin.create(`/api/v1/namespaces/${SOURCE_NS}/serviceaccounts`, {
    metadata: { name: 'bench-floor' },
  });
  await admin.create('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    metadata: { name: 'bench-floor' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
    subjects: [{ kind: 'ServiceAccount', name: 'bench-floor', namespace: SOURCE_NS }],
  });
  const client = new KubeClient(
    (await plane.serviceAccountConfig(SOURCE_NS, 'bench-floor', 12 * 3600)).kubeConfig,
  );
  await poll('the floor ServiceAccount may write', async () => {
    try {
      await client.get('/api/v1/namespaces/default/secrets', { limit: 1 });
      return true;
    } catch {
      return undefined;
    }
  });
  return client;
}

// --- the run ----------------------------------------------------------------------------------------

// F8 first, on a control plane of its own with the node; F1–F7 then run without a node.
const PULL_N = Number(opts['pull-namespaces']);
const pullResult: PullResult =
  PULL_N > 0
    ? await timeToFirstPull({ namespaces: PULL_N, ratePerSecond: Number(opts['pull-rate']), progress })
    : { skipped: '--pull-namespaces=0' };
if ('skipped' in pullResult) progress.note(`F8 skipped: ${pullResult.skipped}`);

const plane = await ControlPlane.start({ progress, controllerManagerQps: 200, auditUsers: AUDITED });
const cleanupOnSignal = stopOnInterrupt(plane);
let regcred: Regcred | undefined;
try {
  const admin = new KubeClient(plane.admin.kubeConfig);
  const kubectl = (...args: string[]) =>
    run(plane.binaries.kubectl, ['--kubeconfig', plane.admin.path, ...args]);
  await kubectl('apply', '-k', join(ROOT, 'config', 'default'));
  const identity = await plane.serviceAccountConfig('regcred-system', 'regcred', 12 * 3600);

  // Setup.
  progress.note(
    `setup: ${N} tenant + ${N} floor namespaces with ${ACCOUNTS.length} ServiceAccounts each, ${UNRELATED} unrelated Secrets (${elapsed()})`,
  );
  const tenants = Array.from({ length: N }, (_, i) => `t-${i}`);
  const floors = Array.from({ length: N }, (_, i) => `f-${i}`);
  await parallel([...tenants, ...floors], FLOOR_CONCURRENCY, async (ns) => {
    await admin.create('/api/v1/namespaces', {
      metadata: { name: ns, labels: ns.startsWith('t-') ? { tenant: 'bench' } : {} },
    });
    for (const sa of ACCOUNTS.slice(1)) {
      await admin.create(`/api/v1/namespaces/${ns}/serviceaccounts`, {
        metadata: { name: sa, labels: { pulls: 'private' } },
      });
    }
  });
  const unrelatedNamespaces = Array.from({ length: Math.ceil(UNRELATED / 1000) }, (_, i) => `u-${i}`);
  await parallel(unrelatedNamespaces, FLOOR_CONCURRENCY, (ns) =>
    admin.create('/api/v1/namespaces', { metadata: { name: ns } }),
  );
  await parallel(
    Array.from({ length: UNRELATED }, (_, i) => i),
    FLOOR_CONCURRENCY,
    (i) =>
      admin.create(`/api/v1/namespaces/u-${Math.floor(i / 1000)}/secrets`, {
        metadata: { name: `app-${i}` },
        type: 'Opaque',
        data: { 'config.json': Buffer.from(`{"setting": ${i}}`).toString('base64') },
      }),
  );
  const configA = dockerConfig('first-password');
  const configB = dockerConfig('rotated-password');
  const [dataA, dataB] = [canonical(configA), canonical(configB)];
  await admin.create(`/api/v1/namespaces/${SOURCE_NS}/secrets`, {
    metadata: { name: COPY },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': Buffer.from(configA).toString('base64') },
  });
  const observer = new Observer(admin, COPY);
  await observer.start();
  const defaults = () => [...observer.accounts.keys()].filter((k) => /^(t|f)-\d+\/default$/.test(k)).length;
  await observer.until(() => defaults() === 2 * N, 600_000, 'every default ServiceAccount');
  progress.note(`setup done: every default ServiceAccount exists (${elapsed()})`);

  // The floor.
  const owner = await floorOwner(admin);
  const floor = await floorClient(plane, admin);
  const settled: Record<string, number> = {};
  settled.floorFanOut = await settle(plane, "the floor's fan-out");
  const floorCpu0 = cpuSeconds(plane);
  const floorF1Wall = Date.now();
  const floorF1Start = performance.now();
  await floorFanOut(floor, floors, ACCOUNTS, COPY, dataA, owner);
  await observer.until(
    () => observer.countCopies('f-') === N && observer.countReferencing('f-') === N * ACCOUNTS.length,
    600_000,
    'the floor fan-out',
  );
  const floorF1 = observer.lastEvent('f-') - floorF1Start;
  const floorCpu1 = cpuSeconds(plane);
  const floorF1Cpu = cpuDelta(floorCpu0, floorCpu1, performance.now() - floorF1Start);
  const floorF1Requests = requestsOf(plane, FLOOR_USER, floorF1Wall, Date.now());
  const floorF1Server = serverTimes(plane, FLOOR_USER, floorF1Wall, Date.now());
  const floorTimeline = observer.timeline('f-', floorF1Start);
  settled.floorRotation = await settle(plane, "the floor's rotation");
  const floorF2Wall = Date.now();
  const floorF2Cpu0 = cpuSeconds(plane);
  const floorF2Start = performance.now();
  await floorRotate(floor, floors, COPY, dataB);
  await observer.until(() => observer.countCopies('f-', dataB) === N, 600_000, 'the floor rotation');
  const floorF2 = observer.lastEvent('f-', dataB) - floorF2Start;
  const floorF2Cpu = cpuDelta(floorF2Cpu0, cpuSeconds(plane), performance.now() - floorF2Start);
  const floorF2Server = serverTimes(plane, FLOOR_USER, floorF2Wall, Date.now());
  progress.note(
    `floor: fan-out ${(floorF1 / 1000).toFixed(2)} s, rotation ${(floorF2 / 1000).toFixed(2)} s (${elapsed()})`,
  );

  const churn = async (prefix: string, labels: Record<string, string>) => {
    const created = new Map<string, number>();
    const names = Array.from({ length: CHURN_N }, (_, i) => `${prefix}${i}`);
    // This process's own event-loop delay during the churn: a stall here delays what the watch
    // sees, for regcred and the floor alike, so it is reported next to their latencies.
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const t0 = performance.now();
    await Promise.all(
      names.map(async (ns, i) => {
        await new Promise((r) =>
          setTimeout(r, Math.max(0, (i * 1000) / CHURN_RATE - (performance.now() - t0))),
        );
        created.set(ns, performance.now());
        await admin.create('/api/v1/namespaces', { metadata: { name: ns, labels } });
      }),
    );
    await observer.until(
      () => names.every((ns) => observer.accounts.get(`${ns}/default`)?.referenced),
      300_000,
      `${prefix} namespaces patched`,
    );
    loop.disable();
    const benchLoopDelayMs = { p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 };
    const fromSa = names.map((ns) => {
      const a = observer.accounts.get(`${ns}/default`)!;
      return a.referenced! - a.added;
    });
    const fromNs = names.map((ns) => observer.accounts.get(`${ns}/default`)!.referenced! - created.get(ns)!);
    return { fromSa, fromNs, benchLoopDelayMs };
  };
  settled.floorChurn = await settle(plane, "the floor's new namespaces");
  const reactorStop = new AbortController();
  const reactor = floorReactor(floor, COPY, dataA, owner, reactorStop.signal).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 500)); // the reactor's watches start from "now"
  const floorF3 = await churn('fc-', { 'bench.regcred.dev/churn': 'floor' });
  reactorStop.abort();
  await reactor;
  progress.note(
    `floor: new namespaces p50 ${percentile(floorF3.fromSa, 50).toFixed(1)} ms, p99 ${percentile(floorF3.fromSa, 99).toFixed(1)} ms; bench event-loop delay max ${floorF3.benchLoopDelayMs.max.toFixed(1)} ms (${elapsed()})`,
  );

  // regcred.
  regcred = await startRegcred(identity.path, SOURCE_NS);
  const readyAfter = await readyAndLeading(regcred);
  const rss: [number, number][] = [];
  const pid = regcred.child.pid!;
  const sampler = setInterval(() => {
    try {
      rss.push([(performance.now() - started) / 1000, rssMiB(regcred!.child.pid!)]);
    } catch {
      // Between processes.
    }
  }, 250);
  const rssBeforeCredential = rssMiB(pid);
  progress.note(
    `regcred ready in ${Math.round(readyAfter)} ms, RSS ${rssBeforeCredential.toFixed(0)} MiB (${elapsed()})`,
  );

  settled.regcredFanOut = await settle(plane, "regcred's fan-out", pid);
  const f1Counts = await apiCounts(plane);
  const f1Wall = Date.now();
  const f1Cpu0 = cpuSeconds(plane, pid);
  const f1Start = performance.now();
  await admin.create('/apis/regcred.dev/v1alpha1/registrycredentials', {
    apiVersion: 'regcred.dev/v1alpha1',
    kind: 'RegistryCredential',
    metadata: { name: COPY },
    spec: {
      source: { secretRef: { namespace: SOURCE_NS, name: COPY } },
      namespaces: { selector: { matchLabels: { tenant: 'bench' } } },
      serviceAccounts: { names: ['default'], selector: { matchLabels: { pulls: 'private' } } },
    },
  });
  await observer.until(
    () => observer.countCopies('t-') === N && observer.countReferencing('t-') === N * ACCOUNTS.length,
    600_000,
    'regcred fan-out',
  );
  const f1 = observer.lastEvent('t-') - f1Start;
  const f1Cpu1 = cpuSeconds(plane, pid);
  const f1Cpu = cpuDelta(f1Cpu0, f1Cpu1, performance.now() - f1Start);
  const f1Delta = countDelta(f1Counts, await apiCounts(plane));
  const f1Regcred = requestsOf(plane, REGCRED_USER, f1Wall, Date.now());
  const f1Server = serverTimes(plane, REGCRED_USER, f1Wall, Date.now());
  const f1PeakRss = Math.max(...rss.filter(([t]) => t * 1000 >= f1Start - started).map(([, v]) => v));
  const regcredTimeline = observer.timeline('t-', f1Start);
  progress.note(`regcred fan-out ${(f1 / 1000).toFixed(2)} s (${elapsed()})`);
  progress.note(`CPU during the floor's fan-out: ${JSON.stringify(floorF1Cpu)}`);
  progress.note(`CPU during regcred's fan-out: ${JSON.stringify(f1Cpu)}`);

  settled.regcredRotation = await settle(plane, "regcred's rotation", pid);
  const f2Wall = Date.now();
  const f2Cpu0 = cpuSeconds(plane, pid);
  const f2Start = performance.now();
  await admin.mergePatch(`/api/v1/namespaces/${SOURCE_NS}/secrets/${COPY}`, {
    data: { '.dockerconfigjson': Buffer.from(configB).toString('base64') },
  });
  await observer.until(() => observer.countCopies('t-', dataB) === N, 600_000, 'regcred rotation');
  const f2 = observer.lastEvent('t-', dataB) - f2Start;
  const f2Cpu = cpuDelta(f2Cpu0, cpuSeconds(plane, pid), performance.now() - f2Start);
  const f2Regcred = requestsOf(plane, REGCRED_USER, f2Wall, Date.now());
  const f2Server = serverTimes(plane, REGCRED_USER, f2Wall, Date.now());
  progress.note(`regcred rotation ${(f2 / 1000).toFixed(2)} s (${elapsed()})`);
  const server = (t: ReturnType<typeof serverTimes>) =>
    `${t.writes} writes, p50 ${t.p50Ms.toFixed(1)} ms, p99 ${t.p99Ms.toFixed(1)} ms, ${t.inFlight.toFixed(1)} in flight`;
  progress.note(`in kube-apiserver, fan-out: floor ${server(floorF1Server)}; regcred ${server(f1Server)}`);
  progress.note(`in kube-apiserver, rotation: floor ${server(floorF2Server)}; regcred ${server(f2Server)}`);
  progress.note(`CPU during the floor's rotation: ${JSON.stringify(floorF2Cpu)}`);
  progress.note(`CPU during regcred's rotation: ${JSON.stringify(f2Cpu)}`);

  settled.regcredChurn = await settle(plane, "regcred's new namespaces", pid);
  const f3 = await churn('c-', { tenant: 'bench' });
  progress.note(
    `regcred new namespaces p50 ${percentile(f3.fromSa, 50).toFixed(1)} ms, p99 ${percentile(f3.fromSa, 99).toFixed(1)} ms; bench event-loop delay max ${f3.benchLoopDelayMs.max.toFixed(1)} ms (${elapsed()})`,
  );

  // Idle.
  const total = N + CHURN_N;
  await poll('status settled', async () => {
    const rc = await admin.get<{
      status?: { namespaces?: { synced?: number }; conditions?: { type: string; status: string }[] };
    }>(`/apis/regcred.dev/v1alpha1/registrycredentials/${COPY}`);
    return (
      rc.status?.namespaces?.synced === total &&
      rc.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
    );
  });
  await new Promise((r) => setTimeout(r, 3000)); // coalesced status writes and Events land
  progress.note(`idle for ${IDLE_S} s (${elapsed()})`);
  const idleCounts = await apiCounts(plane);
  const idleWall = Date.now();
  const idleStart = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_S * 1000)); // the idle period is the measurement
  const idleDelta = countDelta(idleCounts, await apiCounts(plane));
  const idleRegcred = requestsOf(plane, REGCRED_USER, idleWall, Date.now());
  const idleRss = rss.filter(([t]) => t * 1000 >= idleStart - started).map(([, v]) => v);

  // What the process that ran F1–F4 warned of (a failed request or watch, a dropped connection):
  // a figure bought by a retry should say so.
  const warnings = regcred.log.filter((l) => /"level":"(warn|error)"/.test(l));
  progress.note(
    `regcred logged ${warnings.length} warnings or errors during F1–F4${warnings.length ? `, the first: ${warnings[0]}` : ''}`,
  );

  // Restart over the converged world (F7), with the unrelated Secrets present, then without (F6).
  const restartAndSettle = async () => {
    const stopMs = await stopRegcred(regcred!);
    const before = await apiCounts(plane);
    const wall = Date.now();
    regcred = await startRegcred(identity.path, SOURCE_NS);
    const ready = await readyAndLeading(regcred!, ' again');
    await new Promise((r) => setTimeout(r, 20_000)); // long enough for every key to be reconciled once more
    const settledRss = rssMiB(regcred!.child.pid!);
    return {
      stopMs,
      readyMs: ready,
      delta: countDelta(before, await apiCounts(plane)),
      regcred: requestsOf(plane, REGCRED_USER, wall, Date.now()),
      rss: settledRss,
    };
  };
  const withUnrelated = await restartAndSettle();
  progress.note(`restart: ready in ${Math.round(withUnrelated.readyMs)} ms (${elapsed()})`);
  for (const ns of unrelatedNamespaces) await admin.delete(`/api/v1/namespaces/${ns}`);
  await poll('unrelated namespaces gone', async () => {
    const list = await admin.get<{ items: { metadata: { name: string } }[] }>('/api/v1/namespaces');
    return !list.items.some((n) => n.metadata.name.startsWith('u-')) || undefined;
  });
  const withoutUnrelated = await restartAndSettle();
  clearInterval(sampler);
  await stopRegcred(regcred);
  regcred = undefined;
  observer.stop();

  // Figures.
  const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  // Attributed to regcred by the audit log; apiserver_request_total (all clients) is in the raw output.
  const writesTo = (d: Record<string, number>, resources: string) =>
    sum(d, new RegExp(`^${WRITE} (${resources})$`));
  const secretWrites = writesTo(f1Regcred, 'secrets');
  const saWrites = writesTo(f1Regcred, 'serviceaccounts');
  const perNsGets = f1Regcred['get-namespaced'] ?? 0;
  const floorWrites = writesTo(floorF1Requests, 'secrets|serviceaccounts');
  const idleWrites = writesTo(idleRegcred, 'secrets|serviceaccounts|registrycredentials(/status)?');
  const idleReads = idleRegcred['get-namespaced'] ?? 0;
  const idleLease = sum(idleRegcred, / leases$/);
  const f7Writes = writesTo(withUnrelated.regcred, 'secrets|serviceaccounts|registrycredentials(/status)?');
  const idleMedian = percentile(idleRss, 50);
  // The targets, by size (up to 1,000, 3,000, beyond): ratios to the floor, F3's p50 and its p99
  // over the floor's p99 in the same run, RSS, time to ready after a restart, CPU per write.
  const large = N > 3000;
  const target = {
    ratio: large ? 1.2 : 1.15,
    f3P50Ms: 5,
    f3OverFloorP99Ms: large ? 10 : 5,
    rssMiB: N <= 1000 ? 175 : N <= 3000 ? 210 : 320,
    readyS: large ? 10 : 5,
    cpuPerWriteMs: large ? 0.4 : 0.35,
  };
  const unrelatedGrowth = withUnrelated.rss / withoutUnrelated.rss - 1;
  // The floor writes from this process, which also runs the observer in both fan-outs: its
  // writer's share is what this process spent in the floor's fan-out beyond what it spent in
  // regcred's (the same events observed, no writes). An estimate; regcred's own is measured.
  const cpuPerWriteMs = (seconds: number, writes: number) => (writes > 0 ? (seconds * 1000) / writes : 0);
  const regcredPerWrite = cpuPerWriteMs(f1Cpu1.regcred! - f1Cpu0.regcred!, secretWrites + saWrites);
  const floorPerWrite = cpuPerWriteMs(
    floorCpu1.bench! - floorCpu0.bench! - (f1Cpu1.bench! - f1Cpu0.bench!),
    floorWrites,
  );
  const figures: Figure[] = [
    {
      id: 'F1',
      what: 'cold fan-out',
      measured: s(f1),
      floor: s(floorF1),
      ratio: ratio(f1, floorF1),
      target: `≤ ${target.ratio}x floor`,
      met: f1 <= target.ratio * floorF1,
    },
    {
      id: 'F2',
      what: 'rotation',
      measured: s(f2),
      floor: s(floorF2),
      ratio: ratio(f2, floorF2),
      target: `≤ ${target.ratio}x floor`,
      met: f2 <= target.ratio * floorF2,
    },
    {
      id: 'F3',
      what: 'new namespace: SA seen → patched, p50/p99',
      measured: `${percentile(f3.fromSa, 50).toFixed(1)} / ${percentile(f3.fromSa, 99).toFixed(1)} ms`,
      floor: `${percentile(floorF3.fromSa, 50).toFixed(1)} / ${percentile(floorF3.fromSa, 99).toFixed(1)} ms`,
      ratio: ratio(percentile(f3.fromSa, 50), percentile(floorF3.fromSa, 50)),
      target: `≤ ${target.f3P50Ms} / floor + ${target.f3OverFloorP99Ms} ms`,
      met:
        percentile(f3.fromSa, 50) <= target.f3P50Ms &&
        percentile(f3.fromSa, 99) <= percentile(floorF3.fromSa, 99) + target.f3OverFloorP99Ms,
    },
    {
      id: 'F3b',
      what: 'new namespace: created → SA patched, p50/p99',
      measured: `${percentile(f3.fromNs, 50).toFixed(0)} / ${percentile(f3.fromNs, 99).toFixed(0)} ms`,
      floor: `${percentile(floorF3.fromNs, 50).toFixed(0)} / ${percentile(floorF3.fromNs, 99).toFixed(0)} ms`,
      ratio: ratio(percentile(f3.fromNs, 50), percentile(floorF3.fromNs, 50)),
      target: '(reported)',
      met: undefined,
    },
    {
      id: 'F4',
      what: `idle ${IDLE_S} s: writes / per-ns reads (lease)`,
      measured: `${idleWrites} / ${idleReads} (${idleLease})`,
      floor: '0 / 0',
      ratio: '',
      target: '0',
      met: idleWrites === 0 && idleReads === 0,
    },
    {
      id: 'F5',
      what: 'F1 writes per namespace; per-ns GETs',
      measured: `${((secretWrites + saWrites) / N).toFixed(2)}; ${perNsGets}`,
      floor: `${(floorWrites / N).toFixed(2)}; ${floorF1Requests['get-namespaced'] ?? 0}`,
      ratio: ratio(secretWrites + saWrites, floorWrites),
      target: `= ${ACCOUNTS.length + 1}; 0`,
      met: secretWrites === N && saWrites === N * ACCOUNTS.length && perNsGets === 0,
    },
    {
      id: 'F6',
      what: `RSS with ${UNRELATED} unrelated Secrets vs none`,
      measured: `${withUnrelated.rss.toFixed(0)} vs ${withoutUnrelated.rss.toFixed(0)} MiB`,
      floor: '',
      ratio: `${unrelatedGrowth >= 0 ? '+' : ''}${(unrelatedGrowth * 100).toFixed(1)} %`,
      target: '≤ +5 %',
      met: unrelatedGrowth <= 0.05,
    },
    {
      id: 'F6b',
      what: `RSS at ${N} namespaces: idle median / fan-out peak`,
      measured: `${idleMedian.toFixed(0)} / ${f1PeakRss.toFixed(0)} MiB`,
      floor: '',
      ratio: '',
      target: `≤ ${target.rssMiB} MiB`,
      met: Math.max(idleMedian, f1PeakRss) <= target.rssMiB,
    },
    {
      id: 'F7',
      what: 'restart: writes / ready after',
      measured: `${f7Writes} / ${(withUnrelated.readyMs / 1000).toFixed(2)} s`,
      floor: '',
      ratio: '',
      target: `0 / ≤ ${target.readyS} s`,
      met: f7Writes === 0 && withUnrelated.readyMs <= target.readyS * 1000,
    },
    {
      id: 'F9',
      what: "F1 client CPU per write: regcred / the floor's writer",
      measured: `${regcredPerWrite.toFixed(2)} ms`,
      // Not positive when observing regcred's fan-out cost this process more than the floor's
      // writes and observing together: the estimate says nothing then.
      floor: floorPerWrite > 0 ? `${floorPerWrite.toFixed(2)} ms` : 'n/a',
      ratio: ratio(regcredPerWrite, floorPerWrite),
      target: `≤ ${target.cpuPerWriteMs} ms`,
      met: regcredPerWrite <= target.cpuPerWriteMs,
    },
    ...pullFigures(pullResult),
  ];

  const machine = {
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    kubernetes: await kubernetesVersion(),
    date: new Date().toISOString(),
  };
  const dir = join(opts.out, `${machine.date.replaceAll(':', '').slice(0, 15)}-n${N}`);
  mkdirSync(dir, { recursive: true });
  const json = {
    options: {
      namespaces: N,
      serviceAccounts: K,
      unrelatedSecrets: UNRELATED,
      churnRate: CHURN_RATE,
      churnNamespaces: CHURN_N,
      idleSeconds: IDLE_S,
      pullNamespaces: PULL_N,
      pullRate: Number(opts['pull-rate']),
    },
    machine,
    regcredNodeFlags: imageNodeFlags(),
    figures,
    raw: {
      settledMs: settled,
      floor: {
        fanOutMs: floorF1,
        rotationMs: floorF2,
        newNamespaceMs: floorF3,
        fanOutCpu: floorF1Cpu,
        fanOutRequests: floorF1Requests,
        rotationCpu: floorF2Cpu,
        inApiServer: { fanOut: floorF1Server, rotation: floorF2Server },
      },
      regcred: {
        fanOutMs: f1,
        fanOutCpu: f1Cpu,
        rotationMs: f2,
        rotationCpu: f2Cpu,
        inApiServer: { fanOut: f1Server, rotation: f2Server },
        newNamespaceMs: f3,
        readyMs: readyAfter,
        rssBeforeCredentialMiB: rssBeforeCredential,
        warnings,
      },
      requests: {
        note: 'regcred: its own requests, from the audit log; apiserver: apiserver_request_total, every client',
        regcred: {
          fanOut: f1Regcred,
          rotation: f2Regcred,
          idle: idleRegcred,
          restart: withUnrelated.regcred,
        },
        apiserver: { fanOut: f1Delta, idle: idleDelta, restart: withUnrelated.delta },
      },
      restart: { withUnrelated, withoutUnrelated },
      rss: thin(rss, 2000),
      pull: pullResult,
    },
  };
  writeFileSync(join(dir, 'results.json'), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(
    join(dir, 'convergence.svg'),
    convergencePlot(
      `Cold fan-out, ${N} namespaces x ${ACCOUNTS.length} ServiceAccounts (${machine.cpus} cores)`,
      regcredTimeline,
      floorTimeline,
    ),
  );
  process.stdout.write(
    `\nregcred benchmark: ${N} namespaces x ${ACCOUNTS.length} ServiceAccounts, ${UNRELATED} unrelated Secrets, ` +
      `churn ${CHURN_RATE}/s x ${CHURN_N}, idle ${IDLE_S} s; ${machine.cpus} cores, Kubernetes ${machine.kubernetes}, Node ${machine.node}\n\n` +
      `${table(figures)}\n\nwritten to ${dir}/results.json and convergence.svg (${elapsed()})\n`,
  );
} finally {
  if (regcred && regcred.child.exitCode === null) regcred.child.kill('SIGKILL');
  cleanupOnSignal();
  await plane.stop();
}
