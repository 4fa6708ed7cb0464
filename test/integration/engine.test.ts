/**
 * The engine under faults and at scale: the entry point's failure modes, error classification
 * against real API answers, recovery after an API server restart, isolation of a failing
 * namespace, parallel fan-out, and the number of writes a fan-out costs.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { expect } from 'chai';
import winston from 'winston';
import { FaultProxy, kubeconfigVia } from '../../controlplane/faults.ts';
import { ControlPlane } from '../../controlplane/index.ts';
import { DEFAULT_BACKOFF } from '../../src/runtime/backoff.ts';
import { classify } from '../../src/runtime/errors.ts';
import { ApiError, KubeClient, PING_INTERVAL_MS, type RequestOptions } from '../../src/runtime/kube.ts';
import { LeaderElector } from '../../src/runtime/leader.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { REQUIRED_API_WAIT_MS } from '../../src/runtime/manager.ts';
import { Reflector } from '../../src/runtime/reflector.ts';
import { type Meta, Store } from '../../src/runtime/store.ts';
import { cluster } from '../support/cluster.ts';
import { killQuietly, startRegcred } from '../support/processes.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  apiRequestCounts,
  countDelta,
  createCredential,
  createNamespace,
  createServiceAccount,
  createSource,
  deleteCredential,
  denySecrets,
  getCredential,
  getSecret,
  installRegcred,
  operatorIdle,
  patchCredentialSpec,
  pullSecretNames,
  RC_PATH,
  type RunningOperator,
  SOURCE_NAMESPACE,
  startOperator,
  tenantWorld,
  unique,
  updateSource,
  waitForGone,
  waitForReady,
  waitForStatus,
} from '../support/world.ts';

const run = promisify(execFile);
const CRDS = join(import.meta.dirname, '..', '..', 'crds');
const MAIN = join(import.meta.dirname, '..', '..', 'src', 'main.ts');

async function regcred(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, ...args], { env, timeout: 30_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the request to fail');
}

/** A client of the shared control plane through `proxy`, with a kubeconfig of its own. */
async function clientThrough(proxy: FaultProxy, tag: string): Promise<KubeClient> {
  const config = new KubeConfig();
  config.loadFromFile(
    await kubeconfigVia(cluster().admin.path, proxy.url, join(cluster().dir, `${tag}.kubeconfig`)),
  );
  return new KubeClient(config);
}

describe('the entry point', function () {
  this.timeout(60_000);

  it('lists every flag in --help', async () => {
    const { code, out } = await regcred(['--help'], { PATH: process.env.PATH });
    expect(code).to.equal(0);
    for (const flag of [
      '--source-namespaces',
      '--concurrency',
      '--resync-period',
      '--log-level',
      '--kubeconfig',
    ]) {
      expect(out).to.contain(flag);
    }
  });

  it('rejects an unknown flag or a bad value with a clear message', async () => {
    expect(await regcred(['--concurency=3'], { PATH: process.env.PATH })).to.deep.include({ code: 2 });
    const bad = await regcred(['--resync-period=soon'], { PATH: process.env.PATH });
    expect(bad.code).to.equal(2);
    expect(bad.out).to.contain('--resync-period: invalid duration "soon"');
  });

  it('fails loudly without any kubeconfig instead of trying localhost:8080', async () => {
    const home = mkdtempSync(join(tmpdir(), 'regcred-home-'));
    const { code, out } = await regcred([], { PATH: process.env.PATH, HOME: home });
    expect(code).to.equal(1);
    expect(out).to.contain('no Kubernetes configuration: set KUBECONFIG');
    expect(out).not.to.contain('localhost:8080');
  });

  it('exits with an install hint when the CRD is not installed, after waiting for it a while', async () => {
    // A control plane of its own: the shared one has the CRD.
    const bare = await ControlPlane.start();
    try {
      const started = Date.now();
      const { code, out } = await regcred([], { PATH: process.env.PATH, KUBECONFIG: bare.admin.path });
      expect(code).to.equal(3);
      expect(Date.now() - started, 'waited for the CRD first').to.be.at.least(REQUIRED_API_WAIT_MS);
      expect(out).to.contain('waiting for the required API to be served');
      expect(out).to.contain('the RegistryCredential CRD (registrycredentials.regcred.dev) is not installed');
      expect(out).to.contain('kubectl apply -f crds/');
    } finally {
      await bare.stop();
    }
  });

  it('starts when the CRD is installed while it waits, as when both are applied together', async () => {
    const bare = await ControlPlane.start();
    const p = startRegcred(bare.admin.path, ['--health-probe-bind-address=127.0.0.1:0']);
    try {
      await p.waitFor('waiting for the required API to be served');
      await run(bare.binaries.kubectl, ['apply', '-f', CRDS], {
        env: { ...process.env, KUBECONFIG: bare.admin.path },
      });
      await p.waitFor('the required API is served now');
      await p.waitFor('caches synced');
      expect(p.child.exitCode, 'still running').to.equal(null);
    } finally {
      await killQuietly(p);
      await bare.stop();
    }
  });
});

describe('API error classification, on real answers', function () {
  this.timeout(30_000);
  before(installRegcred);

  it('tells conflicts, existing objects, missing objects and terminating namespaces apart', async () => {
    const client = admin();
    const ns = unique('cls');
    await createNamespace(ns);
    const cm = await client.create<{ metadata: { resourceVersion: string } }>(
      `/api/v1/namespaces/${ns}/configmaps`,
      {
        metadata: { name: 'c' },
      },
    );
    await client.mergePatch(`/api/v1/namespaces/${ns}/configmaps/c`, { data: { a: 'b' } });
    const stale = await rejection(
      client.mergePatch(`/api/v1/namespaces/${ns}/configmaps/c`, {
        metadata: { resourceVersion: cm.metadata.resourceVersion },
      }),
    );
    expect(classify(stale).kind).to.equal('conflict');
    const failedTest = await rejection(
      client.request('PATCH', `/api/v1/namespaces/${ns}/configmaps/c`, {
        body: [{ op: 'test', path: '/metadata/resourceVersion', value: cm.metadata.resourceVersion }],
        contentType: 'application/json-patch+json',
      }),
    );
    expect((failedTest as ApiError).code).to.equal(422);
    expect(classify(failedTest).kind).to.equal('conflict');
    expect(
      classify(
        await rejection(client.create(`/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: 'c' } })),
      ).kind,
    ).to.equal('alreadyExists');
    expect(classify(await rejection(client.get(`/api/v1/namespaces/${ns}/configmaps/nope`))).kind).to.equal(
      'notFound',
    );
    const invalid = await rejection(
      client.create(`/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: 'Bad_Name' } }),
    );
    expect(classify(invalid).kind).to.equal('invalid');

    // A finalizer keeps the namespace Terminating long enough to see the API refuse creates in it.
    await client.create(`/api/v1/namespaces/${ns}/configmaps`, {
      metadata: { name: 'held', finalizers: ['regcred.dev/test'] },
    });
    await client.delete(`/api/v1/namespaces/${ns}`);
    const terminating = await rejection(
      client.create(`/api/v1/namespaces/${ns}/secrets`, { metadata: { name: 's' } }),
    );
    expect(classify(terminating).kind).to.equal('terminating');
    await client.mergePatch(`/api/v1/namespaces/${ns}/configmaps/held`, { metadata: { finalizers: null } });
  });

  it('counts network failures as retryable', async () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(classify(err)).to.deep.include({ kind: 'retryable', reason: 'ECONNREFUSED' });
    expect(classify(new ApiError('GET', '/x', 503, { reason: 'ServiceUnavailable' })).kind).to.equal(
      'retryable',
    );
    expect(classify(new ApiError('GET', '/x', 429, { reason: 'TooManyRequests' })).kind).to.equal(
      'retryable',
    );
  });
});

describe('the engine', function () {
  this.timeout(120_000);
  let op: RunningOperator;

  before(async () => {
    await installRegcred();
    op = await startOperator({ name: 'engine', concurrency: 8 });
  });
  after(async () => op?.stop());

  it('recovers after kube-apiserver restarts, and serves a namespace created afterwards', async () => {
    const t = unique('restart');
    await tenantWorld(t, { namespaces: [`${t}-1`], select: 'label' });
    const restartsBefore = op.operator.reflectors.reduce((n, r) => n + r.restarts, 0);
    await cluster().stopApiserver();
    await cluster().startApiserver();
    await createNamespace(`${t}-2`, { tenant: t });
    await eventually('the namespace created after the restart has its copy', () => getSecret(`${t}-2`, t));
    await eventually('and its ServiceAccount is patched', async () =>
      (await pullSecretNames(`${t}-2`)).includes(t),
    );
    expect(op.operator.reflectors.reduce((n, r) => n + r.restarts, 0)).to.be.greaterThan(restartsBefore);
    await deleteCredential(t);
  });

  it('retries a cleanup that fails with backoff, not in a loop, and finishes the deletion once it can', async () => {
    const t = unique('stuck');
    const client = admin();
    await createSource(t);
    await createNamespace(`${t}-ok`, { tenant: t });
    await createNamespace(`${t}-held`, { tenant: t, held: t });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { selector: { matchLabels: { tenant: t } } },
    });
    await waitForReady(t);
    // From now on nobody may delete a Secret in the held namespace.
    const release = await denySecrets(t, 'DELETE', { held: t }, 'secrets are held here');
    await eventually('the policy is in force', async () => {
      const probe = await client.create<{ metadata: { name: string } }>(
        `/api/v1/namespaces/${t}-held/secrets`,
        {
          metadata: { generateName: 'probe-' },
        },
      );
      const err = await client.delete(`/api/v1/namespaces/${t}-held/secrets/${probe.metadata.name}`).then(
        () => undefined,
        (e: unknown) => e,
      );
      return err instanceof ApiError && err.message.includes('secrets are held here');
    });

    const mark = op.requests.length;
    await deleteCredential(t);
    await waitForGone(`/api/v1/namespaces/${t}-ok/secrets/${t}`);
    // The held namespace keeps failing: three seconds of exponential backoff from 100 ms allow a
    // handful of attempts, where a hot loop would make hundreds.
    await new Promise((r) => setTimeout(r, 3000)); // the retry rate over this period is what is measured
    const attempts = op.requests
      .slice(mark)
      .filter((r) => r.startsWith(`DELETE /api/v1/namespaces/${t}-held/secrets/${t} `));
    expect(attempts.length).to.be.within(1, 8);
    expect((await getCredential(t)).metadata.deletionTimestamp).to.be.a('string');

    await release();
    await waitForGone(`${RC_PATH}/${t}`, 90_000);
    expect(await getSecret(`${t}-held`, t)).to.equal(undefined);
    expect(await pullSecretNames(`${t}-held`)).to.deep.equal([]);
  });

  it('still cleans up a RegistryCredential whose spec became invalid, when it is deleted', async () => {
    const t = unique('invalid-then-gone');
    await tenantWorld(t, { select: 'label' });
    // A label key prefix over 253 characters passes the CRD's CEL check but not regcred's.
    await patchCredentialSpec(t, {
      namespaces: { selector: { matchLabels: { [`${'p'.repeat(255)}/x`]: 'y' } } },
    });
    await waitForReady(t, 'False', 'InvalidSpec');
    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
    expect(await getSecret(t, t)).to.equal(undefined);
    expect(await pullSecretNames(t)).to.deep.equal([]);
  });

  it('keeps the last good copy and its entries when secretName changes while the source is broken', async () => {
    const t = unique('rename');
    await tenantWorld(t, { select: 'label', spec: { secretName: `${t}-old` } });
    const good = (await getSecret(t, `${t}-old`))!;
    await updateSource(t, {
      '.dockerconfigjson': Buffer.from('{"auths":{"r.example.com":{"auth":"bm8tY29sb24="}}}').toString(
        'base64',
      ),
    });
    await waitForReady(t, 'False', 'SourceInvalid');
    await patchCredentialSpec(t, { secretName: `${t}-new` });
    await waitForStatus(
      t,
      'the new name is reported',
      (s) => s.secretName === `${t}-new` && s.observedGeneration === 2,
    );
    await operatorIdle(op);
    expect((await getSecret(t, `${t}-old`))?.metadata.resourceVersion).to.equal(
      good.metadata.resourceVersion,
    );
    expect(await getSecret(t, `${t}-new`)).to.equal(undefined);
    expect(await pullSecretNames(t)).to.deep.equal([`${t}-old`]);

    await updateSource(t, {
      '.dockerconfigjson': Buffer.from('{"auths":{"r.example.com":{"auth":"dTpw"}}}').toString('base64'),
    });
    await waitForReady(t);
    expect(await getSecret(t, `${t}-new`)).not.to.equal(undefined);
    await waitForGone(`/api/v1/namespaces/${t}/secrets/${t}-old`);
    expect(await pullSecretNames(t)).to.deep.equal([`${t}-new`]);
    await deleteCredential(t);
  });

  it("caches only its own copies and the source namespaces' Secrets, never every Secret", async () => {
    const t = unique('scope');
    await createNamespace(t, { tenant: t });
    await admin().create(`/api/v1/namespaces/${t}/secrets`, {
      metadata: { name: 'app-config' },
      stringData: { k: 'v' },
    });
    await createSource(t);
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t] },
    });
    await waitForReady(t);
    const cached = op.operator.caches.copies.byIndex('namespace', t).map((s) => s.metadata.name);
    expect(cached).to.deep.equal([t]);
    for (const copy of op.operator.caches.copies.list()) {
      expect(
        copy.metadata.labels?.['app.kubernetes.io/managed-by'],
        `${copy.metadata.namespace}/${copy.metadata.name}`,
      ).to.equal('regcred');
    }
    await deleteCredential(t);
  });

  it('keeps one failing namespace from blocking the others, reports it, and converges once it is fixed', async () => {
    const t = unique('frozen');
    const client = admin();
    // An admission policy that refuses new Secrets in namespaces labelled frozen=<t>.
    const thaw = await denySecrets(t, 'CREATE', { frozen: t }, 'secrets are frozen here');
    await createNamespace(`${t}-ok-1`, { tenant: t });
    await createNamespace(`${t}-bad`, { tenant: t, frozen: t });
    await createNamespace(`${t}-ok-2`, { tenant: t });
    await eventually('the policy is in force', async () => {
      const err = await rejection(
        client.create(`/api/v1/namespaces/${t}-bad/secrets`, { metadata: { generateName: 'probe-' } }),
      ).catch(() => undefined);
      // A policy denial is a 422 Invalid (kubectl words it "forbidden").
      return err instanceof ApiError && err.message.includes('secrets are frozen here');
    });
    await createSource(t);
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { selector: { matchLabels: { tenant: t } } },
    });
    const rc = await waitForReady(t, 'False', 'Failed');
    expect(rc.status?.namespaces).to.deep.include({ selected: 3, failed: 1 });
    expect(rc.status?.failures).to.have.length(1);
    expect(rc.status?.failures?.[0]).to.deep.include({ namespace: `${t}-bad`, reason: 'Invalid' });
    expect(rc.status?.failures?.[0]?.message).to.contain('secrets are frozen here');
    expect(await getSecret(`${t}-ok-1`, t)).not.to.equal(undefined);
    expect(await getSecret(`${t}-ok-2`, t)).not.to.equal(undefined);

    await thaw();
    await waitForReady(t, 'True', 'Synced', 90_000);
    expect(await getSecret(`${t}-bad`, t)).not.to.equal(undefined);
    await deleteCredential(t);
  });

  it('fans out with bounded parallel writes, and costs exactly 1 + #ServiceAccounts writes per namespace', async () => {
    // The API server's counters count every client: let earlier tests' cleanup finish first.
    await eventually('no RegistryCredential is being deleted', async () =>
      (await admin().get<{ items: { metadata: { deletionTimestamp?: string } }[] }>(RC_PATH)).items.every(
        (i) => !i.metadata.deletionTimestamp,
      ),
    );
    await operatorIdle(op);
    const t = unique('fan');
    const namespaces = Number(process.env.REGCRED_FANOUT_NAMESPACES ?? 40);
    await createSource(t);
    await Promise.all(
      Array.from({ length: namespaces }, async (_, i) => {
        await createNamespace(`${t}-${i}`, { tenant: t });
        await createServiceAccount(`${t}-${i}`, 'builder', { labels: { pulls: t } });
        await createServiceAccount(`${t}-${i}`, 'runner', { labels: { pulls: t } });
      }),
    );
    const serviceAccounts = 3;
    // Let the operator see every ServiceAccount before the credential exists.
    await eventually('the operator cached every ServiceAccount', () =>
      Array.from({ length: namespaces }).every(
        (_, i) =>
          op.operator.caches.serviceAccounts.byIndex('namespace', `${t}-${i}`).length === serviceAccounts,
      ),
    );
    op.operator.limiter.highWater = 0;
    const before = await apiRequestCounts();
    const requestsBefore = op.requests.length;
    const started = performance.now();
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { selector: { matchLabels: { tenant: t } } },
      serviceAccounts: { names: ['default'], selector: { matchLabels: { pulls: t } } },
    });
    await waitForStatus(
      t,
      'every namespace synced',
      (s) =>
        s.namespaces?.synced === namespaces && s.serviceAccounts?.patched === namespaces * serviceAccounts,
      120_000,
    );
    const convergedMs = performance.now() - started;
    const delta = countDelta(before, await apiRequestCounts());
    const writes = (resource: string) =>
      ['POST', 'PATCH', 'PUT', 'DELETE'].reduce((n, verb) => n + (delta[`${verb} ${resource}`] ?? 0), 0);
    const ours = op.requests.slice(requestsBefore);
    process.stdout.write(
      `      fan-out over ${namespaces} namespaces x ${serviceAccounts} ServiceAccounts: ${Math.round(convergedMs)} ms to converged status; ` +
        `${writes('secrets')} Secret and ${writes('serviceaccounts')} ServiceAccount writes; max ${op.operator.limiter.highWater} writes in flight\n`,
    );
    expect(writes('secrets')).to.equal(namespaces);
    expect(writes('serviceaccounts')).to.equal(namespaces * serviceAccounts);
    expect(ours.filter((r) => r.startsWith('GET ') && r.includes(`/namespaces/${t}-`))).to.deep.equal([]);
    expect(op.operator.limiter.highWater).to.be.greaterThan(1).and.at.most(8);
    // Routine copies get no Event: a fan-out costs the copies and patches, and at most the
    // credential's own aggregated Events.
    expect(delta['POST events'] ?? 0).to.be.at.most(2);

    // Idle, with the safety-net resync firing: nothing is written and nothing is read per namespace.
    const idleMs = Number(process.env.REGCRED_IDLE_SECONDS ?? 5) * 1000;
    const resync = setInterval(() => op.operator.queue.add(`credential:${t}`), 500);
    const idleBefore = await apiRequestCounts();
    const idleRequests = op.requests.length;
    await new Promise((r) => setTimeout(r, idleMs)); // the idle period itself is what is measured
    clearInterval(resync);
    const idle = countDelta(idleBefore, await apiRequestCounts());
    const idleWrites = Object.entries(idle).filter(([k]) =>
      /^(POST|PATCH|PUT|DELETE) (secrets|serviceaccounts|registrycredentials)/.test(k),
    );
    expect(idleWrites).to.deep.equal([]);
    expect(op.requests.slice(idleRequests).filter((r) => !r.startsWith('WATCH '))).to.deep.equal([]);
    expect((await getCredential(t)).status?.namespaces?.synced).to.equal(namespaces);
    await deleteCredential(t);
  });
});

describe('a reflector through faults one after another', function () {
  this.timeout(120_000);

  it('retries each cut of a watch that was working from the shortest delay, not from where the last fault left off', async () => {
    const t = unique('cuts');
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: cluster().ports.apiserver });
    const client = await clientThrough(proxy, t);
    const retries: number[] = [];
    const logger = winston.createLogger({
      transports: [
        new winston.transports.Stream({
          stream: new Writable({
            objectMode: true,
            write(info: { message: string; retryInMs?: number }, _encoding, done) {
              if (info.message === 'list/watch failed; retrying') retries.push(info.retryInMs!);
              done();
            },
          }),
        }),
      ],
    });
    const store = new Store<Meta>();
    const reflector = new Reflector<Meta>({
      name: 'namespaces',
      client,
      path: '/api/v1/namespaces',
      labelSelector: `cuts=${t}`,
      store,
      transform: (raw) => raw as Meta,
      logger,
    });
    const stop = new AbortController();
    const running = reflector.run(stop.signal);
    try {
      await reflector.synced;
      // Ten faults, each recovered from: the watch is back and brings the next namespace's event.
      // Had the failures added up, the tenth retry would wait 100 ms × 2⁹, capped at 30 s.
      const CUTS = 10;
      for (let i = 0; i < CUTS; i++) {
        const before = reflector.restarts;
        proxy.cutAll();
        await eventually('the reflector noticed the cut', () => reflector.restarts > before);
        await createNamespace(`${t}-${i}`, { cuts: t });
        await eventually(`the watch brought namespace ${t}-${i}`, () => store.get(`${t}-${i}`) !== undefined);
      }
      expect(retries, 'one retry per cut').to.have.length(CUTS);
      for (const ms of retries)
        expect(ms, 'each retry waits the first delay').to.be.at.most(DEFAULT_BACKOFF.baseMs);
    } finally {
      stop.abort();
      await running;
      await proxy.close();
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          admin()
            .delete(`/api/v1/namespaces/${t}-${i}`)
            .catch(() => undefined),
        ),
      );
    }
  });
});

describe('the client on a connection that went silent', function () {
  this.timeout(60_000);

  const path = '/api/v1/namespaces/default';

  /**
   * Runs `test` with a client whose one connection (HTTP/2) swallows every byte from now on; new
   * connections work.
   */
  async function onSilencedConnection(tag: string, test: (client: KubeClient) => Promise<void>) {
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: cluster().ports.apiserver });
    try {
      const client = await clientThrough(proxy, unique(tag));
      await client.get(path); // the connection every later request shares
      proxy.silence();
      proxy.heal();
      await test(client);
    } finally {
      await proxy.close();
    }
  }

  it('gives up a connection when a request times out on it: the next request goes through at once', () =>
    onSilencedConnection('silent', async (client) => {
      const timedOut = await rejection(client.request('GET', path, { timeoutMs: 3000 }));
      expect(classify(timedOut).reason).to.equal('UND_ERR_HEADERS_TIMEOUT');
      // Without giving the connection up, this request would be sent on it too, and wait until
      // undici's probe of the connection timed out in turn (as long as the request's timeout).
      const started = Date.now();
      await client.request('GET', path, { timeoutMs: 10_000 });
      expect(Date.now() - started, 'answered on a new connection').to.be.below(2000);
    }));

  it('gives up a connection that leaves a PING unanswered, long before a request on it would time out', () =>
    onSilencedConnection('unanswered', async (client) => {
      // Waits on the silent connection; only the health check can end it before its 30 s timeout.
      const started = Date.now();
      const failed = await rejection(client.get(path));
      const waited = Date.now() - started;
      expect(String(failed), 'the connection was found dead').to.match(/connection unresponsive/);
      expect(waited, 'within two PING intervals').to.be.at.most(2 * PING_INTERVAL_MS + 3000);
      await client.get(path); // on a new connection
    }));

  it('ends a watch that brings nothing for its inactivity limit, and only that watch', async () => {
    const client = admin();
    const t = unique('quiet');
    const configMaps = '/api/v1/namespaces/default/configmaps';
    // Another watch on the same client (so the same HTTP/2 connection), which must live on.
    const seen: string[] = [];
    const stopOther = new AbortController();
    let otherEnded: unknown;
    const other = client
      .watch(
        configMaps,
        { labelSelector: `other=${t}` },
        (_type, o) => seen.push((o as { metadata: { name: string } }).metadata.name),
        { signal: stopOther.signal, inactivityTimeoutMs: 60_000 },
      )
      .then(
        () => {
          otherEnded = 'resolved';
        },
        (err: unknown) => {
          otherEnded = err;
        },
      );
    try {
      const limitMs = 1500;
      const started = Date.now();
      // No bookmarks asked for, and nothing matches: the API server sends nothing, though it
      // answers every PING; only the watch's own inactivity timer can end it.
      const ended = await rejection(
        client.watch(configMaps, { labelSelector: `nothing=${t}` }, () => {}, {
          signal: new AbortController().signal,
          inactivityTimeoutMs: limitMs,
        }),
      );
      expect(String(ended)).to.match(/no data for 1\.5s/);
      expect(Date.now() - started).to.be.within(limitMs, limitMs + 2000);
      await client.create(configMaps, { metadata: { name: t, labels: { other: t } } });
      await eventually('the other watch, still open, brought the new ConfigMap', () => seen.includes(t));
      expect(otherEnded, 'the other watch was not ended').to.equal(undefined);
    } finally {
      stopOther.abort();
      await other;
      await client.delete(`${configMaps}/${t}`).catch(() => undefined);
    }
  });
});

describe('the leader elector, when a renewal is answered too late', function () {
  this.timeout(60_000);

  it('sends no Lease update for a renewal it gave up at the renew deadline, once the answer comes', async () => {
    const t = unique('late-renewal');
    const client = admin();
    // The client as the elector sees it, with one thing added: when armed, the answer to the next
    // GET is held back (as a pause or a slow network would) until released. Every call is recorded.
    const calls: { method: string; at: number }[] = [];
    const pending = new Set<Promise<unknown>>();
    let hold: Promise<void> | undefined;
    let release = () => {};
    const real = client.request.bind(client);
    client.request = (<T>(method: string, path: string, options?: RequestOptions): Promise<T> => {
      calls.push({ method, at: performance.now() });
      const gate = method === 'GET' ? hold : undefined;
      if (gate) hold = undefined;
      const answer = real<T>(method, path, options).then(
        async (v) => {
          await gate;
          return v;
        },
        async (e: unknown) => {
          await gate;
          throw e;
        },
      );
      pending.add(answer);
      answer.catch(() => {}).finally(() => pending.delete(answer));
      return answer;
    }) as KubeClient['request'];
    const elector = new LeaderElector({
      client,
      logger: silentLogger(),
      namespace: 'default',
      name: t,
      identity: t,
      leaseDurationMs: 4000,
      renewDeadlineMs: 3000,
      retryPeriodMs: 500,
    });
    const stop = new AbortController();
    let leading!: () => void;
    const led = new Promise<void>((r) => (leading = r));
    const ran = elector.run(stop.signal, leading);
    try {
      await led;
      hold = new Promise<void>((r) => (release = r));
      expect(await ran, 'leadership lost at the renew deadline').to.equal('lost');
      const lostAt = performance.now();
      release();
      while (pending.size > 0) await Promise.allSettled([...pending]);
      const late = calls.filter((c) => c.at >= lostAt).map((c) => c.method);
      expect(late, 'requests after leadership was lost').to.deep.equal([]);
    } finally {
      stop.abort();
      release();
      await admin()
        .delete(`/apis/coordination.k8s.io/v1/namespaces/default/leases/${t}`)
        .catch(() => {});
    }
  });
});
