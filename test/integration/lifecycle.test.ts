/**
 * Lifecycle: suspension, deletion and its cleanup, an operator restart over a converged world, and
 * the status (what it says, when it is written, and that no credential ever reaches it, an Event
 * or a log). The operator runs with no periodic resync, so every convergence comes from a watch
 * event.
 */
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { FINALIZER, PULL_SECRETS_ANNOTATION } from '../../src/regcred/objects.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  apiRequestCounts,
  b64,
  condition,
  countDelta,
  createCredential,
  createNamespace,
  createServiceAccount,
  createSource,
  deleteCredential,
  dockerConfig,
  eventsAbout,
  getCredential,
  getSecret,
  getServiceAccount,
  installRegcred,
  operatorIdle,
  operatorSaw,
  patchCredentialSpec,
  pullSecretNames,
  RC_PATH,
  type RunningOperator,
  type SecretJson,
  type ServiceAccountJson,
  SOURCE_NAMESPACE,
  startOperator,
  tenantWorld,
  unique,
  updateSource,
  waitForGone,
  waitForReady,
  waitForStatus,
} from '../support/world.ts';

const REGISTRY = 'registry.example.com';
const WRITE = /^(POST|PATCH|PUT|DELETE) /;

function passwordIn(secret: SecretJson | undefined): string | undefined {
  const text = secret?.data?.['.dockerconfigjson'];
  if (!text) return undefined;
  return JSON.parse(Buffer.from(text, 'base64').toString()).auths?.[REGISTRY]?.password;
}

function credentialData(password: string, extraRegistry?: string): Record<string, string> {
  const auths = JSON.parse(dockerConfig(REGISTRY, 'bot', password)).auths;
  if (extraRegistry) auths[extraRegistry] = { username: 'bot', password, auth: b64(`bot:${password}`) };
  return { '.dockerconfigjson': b64(JSON.stringify({ auths })) };
}

describe('lifecycle', function () {
  this.timeout(60_000);
  /** The file's operator; replaced by a new one in the restart test. */
  let op: RunningOperator | undefined;
  const logPaths: string[] = [];

  before(async () => {
    await installRegcred();
    op = await startOperator({ name: 'lifecycle' });
    logPaths.push(op.logPath);
  });
  after(async () => op?.stop());

  function running(): RunningOperator {
    if (!op) throw new Error('the operator is not running');
    return op;
  }

  const idle = (o: RunningOperator = running()) => operatorIdle(o);
  const operatorSawHere = (kind: 'namespaces' | 'serviceAccounts' | 'copies', key: string, rv: string) =>
    operatorSaw(running(), kind, key, rv);

  /** The operator's writes since `mark` to objects in the given namespaces. */
  function writesIn(namespaces: string[], mark: number): string[] {
    return running()
      .requests.slice(mark)
      .filter((r) => WRITE.test(r) && namespaces.some((ns) => r.includes(`/namespaces/${ns}/`)))
      .filter((r) => !r.includes('/events '));
  }

  it('reports generation, conditions, counts and names in status, and follows a spec change', async () => {
    const t = unique('status');
    const source = await createSource(t);
    const namespaces = [`${t}-a`, `${t}-b`, `${t}-c`];
    for (const ns of namespaces) {
      await createNamespace(ns);
      await createServiceAccount(ns, 'builder');
    }
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: namespaces.slice(0, 2) },
      serviceAccounts: { names: ['default', 'builder'] },
    });
    const rc = await waitForReady(t);
    expect(rc.metadata.generation).to.equal(1);
    const status = rc.status!;
    expect(status.observedGeneration).to.equal(1);
    const ready = condition(rc, 'Ready')!;
    expect(ready).to.include({
      status: 'True',
      reason: 'Synced',
      message: '2 namespace(s) synced, 4 ServiceAccount(s) patched',
      observedGeneration: 1,
    });
    expect(Date.parse(ready.lastTransitionTime)).not.to.be.NaN;
    const sourceValid = condition(rc, 'SourceValid')!;
    expect(sourceValid).to.include({
      status: 'True',
      reason: 'Valid',
      message: `${SOURCE_NAMESPACE}/${t} holds credentials for 1 registry`,
      observedGeneration: 1,
    });
    expect(status.conditions?.map((c) => c.type).sort()).to.deep.equal(['Ready', 'SourceValid']);
    expect(status.source).to.equal(`${SOURCE_NAMESPACE}/${t}`);
    expect(status.secretName).to.equal(t);
    expect(status.synced).to.equal('2/2');
    expect(status.namespaces).to.deep.equal({ selected: 2, synced: 2, failed: 0, conflicting: 0 });
    expect(status.serviceAccounts).to.deep.equal({ patched: 4 });
    expect(status.sourceResourceVersion).to.equal(source.metadata.resourceVersion);
    expect(status.failures).to.equal(undefined);
    expect(status.lastRotationTime).to.equal(undefined);

    await patchCredentialSpec(t, { namespaces: { names: namespaces }, secretName: `${t}-pull` });
    const next = await waitForStatus(
      t,
      'generation 2 observed, three namespaces synced',
      (s) => s.observedGeneration === 2 && s.synced === '3/3' && s.serviceAccounts?.patched === 6,
    );
    expect(next.metadata.generation).to.equal(2);
    expect(condition(next, 'Ready')).to.include({
      status: 'True',
      reason: 'Synced',
      message: '3 namespace(s) synced, 6 ServiceAccount(s) patched',
      observedGeneration: 2,
    });
    expect(condition(next, 'SourceValid')?.observedGeneration).to.equal(2);
    expect(next.status?.secretName).to.equal(`${t}-pull`);
    expect(next.status?.namespaces).to.deep.equal({ selected: 3, synced: 3, failed: 0, conflicting: 0 });
    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
  });

  it('writes nothing while suspended, and converges once resumed', async () => {
    const t = unique('suspend');
    const namespaces = [`${t}-a`, `${t}-b`];
    await tenantWorld(t, { source: { data: credentialData('pw-before') }, namespaces, select: 'label' });
    const copiesBefore = new Map<string, SecretJson>();
    for (const ns of namespaces) copiesBefore.set(ns, (await getSecret(ns, t))!);

    await patchCredentialSpec(t, { suspend: true });
    // Ready=True: regcred does what the spec asks (nothing), which kstatus reads as Current.
    const suspended = await waitForReady(t, 'True', 'Suspended');
    expect(condition(suspended, 'Ready')?.message).to.equal(
      'spec.suspend is true: regcred changes no copy and no ServiceAccount (copies may be out of date)',
    );
    await idle();
    const mark = running().requests.length;

    // The source changes (to two registries, so the status shows the operator saw it), and
    // someone removes regcred's entry from a ServiceAccount.
    const updated = await updateSource(t, credentialData('pw-after', 'mirror.example.com'));
    const sa = await admin().mergePatch<ServiceAccountJson>(
      `/api/v1/namespaces/${t}-a/serviceaccounts/default`,
      { imagePullSecrets: [] },
    );
    await waitForStatus(t, 'the new source version is seen', (s) =>
      Boolean(
        s.conditions
          ?.find((c) => c.type === 'SourceValid')
          ?.message.endsWith('holds credentials for 2 registries'),
      ),
    );
    await operatorSawHere('serviceAccounts', `${t}-a/default`, sa.metadata.resourceVersion);

    for (const ns of namespaces) {
      const copy = (await getSecret(ns, t))!;
      expect(copy.metadata.resourceVersion, `${ns}: copy untouched`).to.equal(
        copiesBefore.get(ns)!.metadata.resourceVersion,
      );
      expect(passwordIn(copy)).to.equal('pw-before');
    }
    expect(await pullSecretNames(`${t}-a`)).to.deep.equal([]);
    expect(await pullSecretNames(`${t}-b`)).to.deep.equal([t]);
    expect(writesIn(namespaces, mark)).to.deep.equal([]);
    const still = await getCredential(t);
    expect(condition(still, 'Ready')?.reason).to.equal('Suspended');
    expect(still.status?.sourceResourceVersion, 'nothing propagated while suspended').not.to.equal(
      updated.metadata.resourceVersion,
    );

    await patchCredentialSpec(t, { suspend: false });
    await eventually('the copies hold the new credential and the entry is back', async () => {
      for (const ns of namespaces) {
        if (passwordIn(await getSecret(ns, t)) !== 'pw-after') return false;
        if (!(await pullSecretNames(ns)).includes(t)) return false;
      }
      return true;
    });
    for (const ns of namespaces) {
      expect((await getSecret(ns, t))!.metadata.uid).to.equal(copiesBefore.get(ns)!.metadata.uid);
    }
    const resumed = await waitForReady(t);
    expect(resumed.metadata.generation).to.equal(3);
    expect(resumed.status?.synced).to.equal('2/2');
    expect(resumed.status?.sourceResourceVersion).to.equal(updated.metadata.resourceVersion);
    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
  });

  it('cleans up when a suspended RegistryCredential is deleted', async () => {
    const t = unique('suspdel');
    const namespaces = [`${t}-a`, `${t}-b`];
    await createSource(t);
    for (const ns of namespaces) {
      await createNamespace(ns);
      await admin().mergePatch(`/api/v1/namespaces/${ns}/serviceaccounts/default`, {
        imagePullSecrets: [{ name: 'team-a' }],
      });
    }
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: namespaces },
    });
    await waitForReady(t);
    for (const ns of namespaces) expect(await pullSecretNames(ns)).to.deep.equal(['team-a', t]);
    await patchCredentialSpec(t, { suspend: true });
    await waitForReady(t, 'True', 'Suspended');

    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
    for (const ns of namespaces) {
      expect(await getSecret(ns, t), `${ns}: copy`).to.equal(undefined);
      expect(await pullSecretNames(ns)).to.deep.equal(['team-a']);
      expect((await getServiceAccount(ns)).metadata.annotations?.[PULL_SECRETS_ANNOTATION]).to.equal(
        undefined,
      );
    }
  });

  it('removes every copy and entry it added when deleted, keeps the entries others wrote, then lets the RegistryCredential go', async () => {
    const t = unique('delete');
    const namespaces = [`${t}-a`, `${t}-b`, `${t}-c`];
    await createSource(t);
    for (const ns of namespaces) {
      await createNamespace(ns);
      await admin().mergePatch(`/api/v1/namespaces/${ns}/serviceaccounts/default`, {
        imagePullSecrets: [{ name: 'team-a' }],
      });
      await createServiceAccount(ns, 'builder', { imagePullSecrets: ['team-b'] });
    }
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: namespaces },
      serviceAccounts: { names: ['default', 'builder'] },
    });
    const rc = await waitForReady(t);
    expect(rc.metadata.finalizers).to.deep.equal([FINALIZER]);
    for (const ns of namespaces) {
      expect((await getSecret(ns, t))!.metadata.finalizers ?? [], `${ns}: copy`).to.deep.equal([]);
      const namespace = await admin().get<{
        metadata: { finalizers?: string[] };
        spec?: { finalizers?: string[] };
      }>(`/api/v1/namespaces/${ns}`);
      expect(namespace.metadata.finalizers ?? []).to.deep.equal([]);
      expect(namespace.spec?.finalizers ?? []).to.deep.equal(['kubernetes']);
      expect(await pullSecretNames(ns, 'default')).to.deep.equal(['team-a', t]);
      expect(await pullSecretNames(ns, 'builder')).to.deep.equal(['team-b', t]);
    }

    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
    // Gone means the finalizer was removed, which regcred does only once nothing of it is left.
    for (const ns of namespaces) {
      expect(await getSecret(ns, t), `${ns}: copy`).to.equal(undefined);
      expect(await pullSecretNames(ns, 'default')).to.deep.equal(['team-a']);
      expect(await pullSecretNames(ns, 'builder')).to.deep.equal(['team-b']);
      for (const sa of ['default', 'builder']) {
        expect(
          (await getServiceAccount(ns, sa)).metadata.annotations?.[PULL_SECRETS_ANNOTATION],
          `${ns}/${sa}`,
        ).to.equal(undefined);
      }
    }
  });

  it('makes no write at all when restarted over a converged world', async () => {
    const t = unique('restart');
    const namespaces = [1, 2, 3, 4, 5].map((i) => `${t}-${i}`);
    // Nothing else may be in progress: no RegistryCredential still being deleted.
    await eventually('no RegistryCredential is being deleted', async () => {
      const list = await admin().get<{ items: { metadata: { deletionTimestamp?: string } }[] }>(RC_PATH);
      return list.items.every((i) => !i.metadata.deletionTimestamp);
    });
    const beforeWorld = await apiRequestCounts();
    await createSource(t);
    for (const ns of namespaces) {
      await createNamespace(ns, { tenant: t });
      await createServiceAccount(ns, 'builder');
    }
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { selector: { matchLabels: { tenant: t } } },
      serviceAccounts: { names: ['default', 'builder'] },
    });
    await waitForStatus(
      t,
      'five namespaces and ten ServiceAccounts',
      (s) => s.serviceAccounts?.patched === 10,
    );
    const converged = await waitForReady(t);
    expect(converged.status?.synced).to.equal('5/5');
    await idle();
    // The counters this test relies on are real: converging the world moved them.
    const built = countDelta(beforeWorld, await apiRequestCounts());
    expect(built['POST secrets'] ?? 0).to.be.at.least(5);
    expect(built['PATCH serviceaccounts'] ?? 0).to.be.at.least(10);
    expect(built['PATCH registrycredentials/status'] ?? 0).to.be.at.least(1);

    await running().stop();
    op = undefined;
    const settled = (await getCredential(t)).metadata.resourceVersion;
    const before = await apiRequestCounts();
    const restarted = await startOperator({ name: 'lifecycle-restarted' });
    op = restarted;
    logPaths.push(restarted.logPath);
    // start() resolved: the caches are synced and every RegistryCredential is queued. Idle means
    // every credential, namespace and (delayed) status key was processed and no request of it (an
    // Event, posted without waiting) is still on its way: any write it made is in its requests now,
    // and only a change in the world could make it act again.
    await idle(restarted);
    const after = await apiRequestCounts();

    expect(restarted.requests.filter((r) => WRITE.test(r))).to.deep.equal([]);
    const writes = Object.fromEntries(
      Object.entries(countDelta(before, after)).filter(([k]) =>
        /^(POST|PATCH|PUT|DELETE|APPLY) (secrets|serviceaccounts|registrycredentials)\b/.test(k),
      ),
    );
    expect(writes).to.deep.equal({});
    expect((await getCredential(t)).metadata.resourceVersion).to.equal(settled);

    // The new operator is alive, not just quiet: it restores an entry someone removes.
    await admin().mergePatch(`/api/v1/namespaces/${t}-1/serviceaccounts/builder`, { imagePullSecrets: [] });
    await eventually('the new operator restores the entry', async () =>
      (await pullSecretNames(`${t}-1`, 'builder')).includes(t),
    );
    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
  });

  it('writes status only when something in it changed', async () => {
    const t = unique('quiet');
    const [tenant, unrelated, later] = [`${t}-tenant`, `${t}-other`, `${t}-later`];
    await createNamespace(unrelated);
    await tenantWorld(t, { namespaces: [tenant], select: 'label' });
    await idle();
    const rv = (await getCredential(t)).metadata.resourceVersion;
    const mark = running().requests.length;

    // Events that change nothing in the status: an unrelated namespace relabelled, an unrelated
    // label on a tenant namespace, someone else's annotation on a selected ServiceAccount.
    const other = await admin().mergePatch<{ metadata: { resourceVersion: string } }>(
      `/api/v1/namespaces/${unrelated}`,
      { metadata: { labels: { color: 'blue' } } },
    );
    await operatorSawHere('namespaces', unrelated, other.metadata.resourceVersion);
    const ns = await admin().mergePatch<{ metadata: { resourceVersion: string } }>(
      `/api/v1/namespaces/${tenant}`,
      { metadata: { labels: { color: 'green' } } },
    );
    await operatorSawHere('namespaces', tenant, ns.metadata.resourceVersion);
    const sa = await admin().mergePatch<ServiceAccountJson>(
      `/api/v1/namespaces/${tenant}/serviceaccounts/default`,
      { metadata: { annotations: { 'example.com/note': 'hello' } } },
    );
    await operatorSawHere('serviceAccounts', `${tenant}/default`, sa.metadata.resourceVersion);

    expect((await getCredential(t)).metadata.resourceVersion).to.equal(rv);
    expect(
      running()
        .requests.slice(mark)
        .filter((r) => WRITE.test(r) && r.includes(`${RC_PATH}/${t}`)),
    ).to.deep.equal([]);
    expect(writesIn([tenant, unrelated], mark)).to.deep.equal([]);

    // The same wait does see a status write when something in it changes.
    await createNamespace(later, { tenant: t });
    const changed = await waitForStatus(t, 'two namespaces synced', (s) => s.synced === '2/2');
    expect(changed.metadata.resourceVersion).not.to.equal(rv);
    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
  });

  it('never puts the credential in status, Events or logs', async () => {
    const t = unique('secret');
    const passwords = [`Zq7-${t}-first-XyZ`, `Zq7-${t}-second-XyZ`, `Zq7-${t}-planted-XyZ`];
    const [first, second, planted] = passwords as [string, string, string];
    const namespaces = [`${t}-a`, `${t}-b`];
    await tenantWorld(t, { source: { data: credentialData(first) }, namespaces });
    const firstCopy = JSON.stringify(await getSecret(`${t}-a`, t));

    // A rotation and a restored drift: the paths that log and record Events about copies.
    await updateSource(t, credentialData(second));
    await waitForStatus(t, 'the rotation is recorded', (s) => s.lastRotationTime !== undefined);
    await admin().mergePatch(`/api/v1/namespaces/${t}-b/secrets/${t}`, {
      data: credentialData(planted),
    });
    await eventually('the planted credential is replaced', async () =>
      passwordIn(await getSecret(`${t}-b`, t)) === second ? true : undefined,
    );
    await eventually('the Rotated and DriftRestored events are recorded', async () => {
      const reasons = [
        ...(await eventsAbout('default', t)).map((e) => e.reason),
        ...(await eventsAbout(`${t}-b`, t)).map((e) => e.reason),
      ];
      return reasons.includes('Rotated') && reasons.includes('DriftRestored');
    });
    await idle();
    // The file logger writes asynchronously: wait until it has written the three copy updates.
    const log = () => logPaths.map((p) => readFileSync(p, 'utf8')).join('\n');
    await eventually('the copy updates are in the log', () => {
      const lines = log()
        .split('\n')
        .filter((l) => l.includes('copy updated') && l.includes(`"credential":"${t}"`));
      return lines.length >= 3;
    });

    const needles = passwords.flatMap((p) => [
      p,
      b64(p),
      b64(`bot:${p}`),
      credentialData(p)['.dockerconfigjson']!,
      b64(JSON.stringify({ auths: { [REGISTRY]: { auth: b64(`bot:${p}`), password: p, username: 'bot' } } })),
    ]);
    // The needles are what a leak would look like: the copies do hold the canonical form.
    expect(firstCopy).to.include(needles[4]!);
    expect(JSON.stringify(await getSecret(`${t}-a`, t))).to.include(needles[9]!);

    const haystacks: Record<string, string> = {
      'the RegistryCredential': JSON.stringify(await getCredential(t)),
      'Events in default': JSON.stringify(await admin().get('/api/v1/namespaces/default/events')),
      'the operator logs': log(),
    };
    for (const ns of namespaces)
      haystacks[`Events in ${ns}`] = JSON.stringify(await admin().get(`/api/v1/namespaces/${ns}/events`));
    expect(haystacks['Events in default']).to.include('Rotated');
    for (const [where, text] of Object.entries(haystacks)) {
      for (const needle of needles)
        expect(text.includes(needle), `${where} contains ${needle}`).to.equal(false);
    }
    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
  });
});
