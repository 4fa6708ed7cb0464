/**
 * Running it in production: two replicas with leader election (failover after SIGKILL, handover
 * after SIGTERM), health probes, and metrics, plain and secure. Every operator here is a separate
 * process started from src/main.ts, as its own ServiceAccount.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { expect } from 'chai';
import { PULL_SECRETS_ANNOTATION } from '../../src/regcred/objects.ts';
import { killQuietly, type RegcredProcess, startRegcred } from '../support/processes.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  createCredential,
  createNamespace,
  createServiceAccount,
  createSource,
  deleteCredential,
  eventsAbout,
  getCredential,
  getSecret,
  getServiceAccount,
  installRegcred,
  operatorConfig,
  SOURCE_NAMESPACE,
  tenantWorld,
  unique,
  waitForStatus,
} from '../support/world.ts';

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const send = url.startsWith('https') ? httpsRequest : httpRequest;
    const req = send(url, { headers, rejectUnauthorized: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Lease {
  spec: { holderIdentity?: string | null; leaseTransitions?: number };
}

const FAST_ELECTION = [
  '--leader-elect',
  '--leader-elect-lease-duration=4s',
  '--leader-elect-renew-deadline=3s',
  '--leader-elect-retry-period=500ms',
  `--leader-elect-resource-namespace=${SOURCE_NAMESPACE}`,
  '--health-probe-bind-address=127.0.0.1:0',
];

describe('leader election', function () {
  this.timeout(180_000);
  const running: RegcredProcess[] = [];
  let kubeconfig: string;

  before(async () => {
    await installRegcred();
    kubeconfig = (await operatorConfig()).path;
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map(killQuietly));
  });

  function replica(lease: string, extra: string[] = []): RegcredProcess {
    const p = startRegcred(kubeconfig, [...FAST_ELECTION, `--leader-elect-resource-name=${lease}`, ...extra]);
    running.push(p);
    return p;
  }

  it('fails over to the follower within lease duration + retry period after SIGKILL mid-fan-out, losing and duplicating nothing', async () => {
    const t = unique('failover');
    const namespaces = 60;
    await createSource(t);
    await Promise.all(
      Array.from({ length: namespaces }, async (_, i) => {
        await createNamespace(`${t}-${i}`, { tenant: t });
        await createServiceAccount(`${t}-${i}`, 'builder');
      }),
    );
    const a = replica(t, ['--concurrency=2']);
    await a.waitFor('became leader');
    const b = replica(t, ['--concurrency=2']);
    await b.waitFor('running as a candidate for leadership');
    const { healthProbes } = await b.endpoints();
    await eventually(
      'the follower is ready',
      async () => (await get(`http://${healthProbes}/readyz`)).status === 200,
    );
    expect(b.lines.some((l) => l.message === 'became leader')).to.equal(false);

    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { selector: { matchLabels: { tenant: t } } },
      serviceAccounts: { names: ['default', 'builder'] },
    });
    // Mid-fan-out: some copies written, not all.
    await eventually('the leader wrote some copies', async () => {
      const list = await admin().get<{ items: unknown[] }>('/api/v1/secrets', {
        labelSelector: `regcred.dev/credential=${t}`,
      });
      return list.items.length >= 5;
    });
    a.child.kill('SIGKILL');
    const killedAt = Date.now();
    await a.exited;
    const copiesAtKill = (
      await admin().get<{ items: unknown[] }>('/api/v1/secrets', {
        labelSelector: `regcred.dev/credential=${t}`,
      })
    ).items.length;
    expect(copiesAtKill).to.be.lessThan(namespaces);

    const took = await b.waitFor('became leader', 20_000);
    const takeoverMs = Date.parse(took.timestamp) - killedAt;
    expect(takeoverMs, `took over after ${takeoverMs} ms`).to.be.at.most(4000 + 500 + 300);

    await waitForStatus(
      t,
      'every namespace synced',
      (s) => s.namespaces?.synced === namespaces && s.serviceAccounts?.patched === 2 * namespaces,
      120_000,
    );
    for (let i = 0; i < namespaces; i++) {
      const ns = `${t}-${i}`;
      const copy = (await getSecret(ns, t))!;
      expect(copy.metadata.ownerReferences, ns).to.have.length(1);
      for (const sa of ['default', 'builder']) {
        const account = await getServiceAccount(ns, sa);
        expect(
          (account.imagePullSecrets ?? []).map((e) => e.name),
          `${ns}/${sa}`,
        ).to.deep.equal([t]);
        expect(account.metadata.annotations?.[PULL_SECRETS_ANNOTATION], `${ns}/${sa}`).to.equal(
          JSON.stringify({ [t]: t }),
        );
      }
    }
    const lease = await admin().get<Lease>(
      `/apis/coordination.k8s.io/v1/namespaces/${SOURCE_NAMESPACE}/leases/${t}`,
    );
    expect(lease.spec.leaseTransitions).to.equal(1);
    await deleteCredential(t);
  });

  it('on SIGTERM stops, releases the lease, and the follower takes over at once', async () => {
    const t = unique('sigterm');
    await tenantWorld(t, { select: 'label', ready: false });
    const a = replica(t);
    await a.waitFor('became leader');
    await waitForStatus(t, 'synced', (s) => s.namespaces?.synced === 1);
    const b = replica(t);
    await b.waitFor('running as a candidate for leadership');

    const sentAt = Date.now();
    a.child.kill('SIGTERM');
    expect(await a.exited).to.equal(0);
    const exitedAfter = Date.now() - sentAt;
    expect(
      a.lines.map((l) => l.message),
      JSON.stringify(a.lines.filter((l) => l.level !== 'info')),
    ).to.include.members(['stopping', 'released the lease', 'stopped']);
    const took = await b.waitFor('became leader', 10_000);
    // Released: no waiting for the 4 s lease to expire, only for the follower's next attempt.
    expect(Date.parse(took.timestamp) - sentAt).to.be.at.most(exitedAfter + 500 + 300);

    // The new leader serves: a new namespace gets its copy.
    await createNamespace(`${t}-new`, { tenant: t });
    await eventually('the new leader copied into the new namespace', () => getSecret(`${t}-new`, t));
    await deleteCredential(t);
  });

  it('makes no write but lease renewals while idle', async () => {
    const t = unique('idle');
    await createSource(t);
    await createNamespace(t, { tenant: t });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t] },
    });
    const a = replica(t, ['--metrics-bind-address=127.0.0.1:0']);
    await a.waitFor('became leader');
    await waitForStatus(t, 'synced', (s) => s.namespaces?.synced === 1);
    const { metrics } = await a.endpoints();
    const writes = async () => {
      const text = (await get(metrics)).body;
      const count = (method: string) =>
        [
          ...text.matchAll(
            new RegExp(`^rest_client_requests_total\\{method="${method}",code="\\d+"\\} (\\d+)`, 'gm'),
          ),
        ].reduce((n, m) => n + Number(m[1]), 0);
      return { put: count('PUT'), other: count('POST') + count('PATCH') + count('DELETE') };
    };
    // Let the status settle (coalesced writes) and the Event announcing it land (regcred posts it
    // after the status write, and has nothing left to do), then watch a quiet period of several
    // renewals.
    await eventually(
      'the operator settled',
      async () => (await getCredential(t)).status?.observedGeneration === 1,
    );
    await eventually('the Synced event is recorded', async () =>
      (await eventsAbout('default', t)).some((e) => e.reason === 'Synced'),
    );
    const before = await writes();
    await new Promise((r) => setTimeout(r, 3000)); // the idle period itself is what is measured
    const after = await writes();
    expect(after.other - before.other, 'writes other than lease renewals').to.equal(0);
    expect(after.put - before.put, 'lease renewals (PUT) every 500 ms').to.be.within(4, 8);
    await deleteCredential(t);
  });
});

describe('health probes and metrics', function () {
  this.timeout(60_000);
  let p: RegcredProcess | undefined;
  before(installRegcred);
  afterEach(async () => killQuietly(p));

  it('serves /healthz, /readyz once caches synced, and plain /metrics with the documented series', async () => {
    p = startRegcred((await operatorConfig()).path, [
      '--health-probe-bind-address=127.0.0.1:0',
      '--metrics-bind-address=127.0.0.1:0',
    ]);
    const { healthProbes, metrics } = await p.endpoints();
    expect((await get(`http://${healthProbes}/healthz`)).status).to.equal(200);
    await p.waitFor('running');
    expect((await get(`http://${healthProbes}/readyz`)).status).to.equal(200);
    expect((await get(`http://${healthProbes}/nope`)).status).to.equal(404);
    const t = unique('metrics');
    await tenantWorld(t, { ready: false });
    await waitForStatus(t, 'synced', (s) => s.namespaces?.synced === 1);
    const res = await get(metrics);
    expect(res.status).to.equal(200);
    for (const series of [
      'controller_runtime_reconcile_total{controller="registrycredential",result="success"}',
      'controller_runtime_reconcile_time_seconds_bucket',
      'workqueue_depth{name="registrycredential"}',
      'workqueue_queue_duration_seconds_bucket',
      'rest_client_requests_total{method="POST",code="201"}',
      'rest_client_request_duration_seconds_bucket',
      'leader_election_master_status',
      'regcred_managed_copies',
      'process_resident_memory_bytes',
    ]) {
      expect(res.body, series).to.contain(series);
    }
    expect(Number(/^regcred_managed_copies (\d+)/m.exec(res.body)?.[1])).to.be.at.least(1);
    await deleteCredential(t);
  });

  it('lets a scrape of secure /metrics in only with a token allowed to GET /metrics', async () => {
    p = startRegcred((await operatorConfig()).path, [
      '--health-probe-bind-address=0',
      '--metrics-bind-address=127.0.0.1:0',
      '--metrics-secure',
    ]);
    const { metrics } = await p.endpoints();
    expect(metrics).to.match(/^https:/);
    const client = admin();
    const ns = unique('prom');
    await createNamespace(ns);
    await createServiceAccount(ns, 'prometheus');
    await createServiceAccount(ns, 'stranger');
    await client.create('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
      metadata: { name: ns },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'regcred-metrics-reader' },
      subjects: [{ kind: 'ServiceAccount', name: 'prometheus', namespace: ns }],
    });
    const tokenOf = async (sa: string) =>
      (
        await client.create<{ status: { token: string } }>(
          `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`,
          {
            spec: { expirationSeconds: 600 },
          },
        )
      ).status.token;

    expect((await get(metrics)).status).to.equal(401);
    expect((await get(metrics, { Authorization: 'Bearer not-a-token' })).status).to.equal(401);
    expect((await get(metrics, { Authorization: `Bearer ${await tokenOf('stranger')}` })).status).to.equal(
      403,
    );
    const allowed = await eventually('the reader may scrape', async () => {
      const res = await get(metrics, { Authorization: `Bearer ${await tokenOf('prometheus')}` });
      return res.status === 200 ? res : undefined;
    });
    expect(allowed.body).to.contain('controller_runtime_reconcile_total');
  });
});
