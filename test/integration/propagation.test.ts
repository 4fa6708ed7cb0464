/**
 * Propagation: copies in every selected namespace, ServiceAccounts pointing at them, and
 * convergence driven by watch events (the operator here runs with no periodic resync at all).
 */
import { expect } from 'chai';
import { FINALIZER, MANAGED_BY_LABEL, PULL_SECRETS_ANNOTATION } from '../../src/regcred/objects.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  b64,
  createCredential,
  createNamespace,
  createServiceAccount,
  createSource,
  deleteCredential,
  dockerConfig,
  getCredential,
  getSecret,
  getServiceAccount,
  installRegcred,
  patchCredentialSpec,
  pullSecretNames,
  type RunningOperator,
  SOURCE_NAMESPACE,
  startOperator,
  tenantWorld,
  unique,
  waitForGone,
  waitForReady,
  waitForStatus,
} from '../support/world.ts';

describe('propagation', function () {
  this.timeout(60_000);
  let op: RunningOperator;

  before(async () => {
    await installRegcred();
    op = await startOperator({ name: 'propagation' });
  });
  after(async () => op?.stop());

  it('gives every selected namespace a copy with the credential, its own metadata only, and an owner', async () => {
    const t = unique('prop');
    const source = await createSource(t, {
      labels: { 'argocd.argoproj.io/instance': 'platform', 'app.kubernetes.io/managed-by': 'argocd' },
      data: { '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', 'pw-one')) },
    });
    await createNamespace(`${t}-named`);
    await createNamespace(`${t}-labelled`, { tenant: t });
    await createNamespace(`${t}-other`);
    const rc = await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [`${t}-named`, SOURCE_NAMESPACE], selector: { matchLabels: { tenant: t } } },
    });
    await waitForReady(t);

    for (const ns of [`${t}-named`, `${t}-labelled`]) {
      const copy = (await getSecret(ns, t))!;
      expect(copy.type).to.equal('kubernetes.io/dockerconfigjson');
      const credential = JSON.parse(Buffer.from(copy.data!['.dockerconfigjson']!, 'base64').toString());
      expect(credential.auths['registry.example.com'].password).to.equal('pw-one');
      expect(copy.metadata.labels).to.deep.equal({
        [MANAGED_BY_LABEL]: 'regcred',
        'regcred.dev/credential': t,
      });
      expect(copy.metadata.annotations).to.deep.equal({
        'regcred.dev/credential': t,
        'regcred.dev/source': `${SOURCE_NAMESPACE}/${t}`,
        'regcred.dev/source-resource-version': source.metadata.resourceVersion,
      });
      expect(copy.metadata.ownerReferences).to.deep.equal([
        {
          apiVersion: 'regcred.dev/v1alpha1',
          kind: 'RegistryCredential',
          name: t,
          uid: rc.metadata.uid,
          controller: true,
        },
      ]);
      expect(copy.metadata.finalizers ?? []).to.deep.equal([]);
    }
    expect(await getSecret(`${t}-other`, t)).to.equal(undefined);
    // The source's own namespace is never a target, even when named.
    expect((await getSecret(SOURCE_NAMESPACE, t))?.metadata.uid).to.equal(source.metadata.uid);
    expect(await pullSecretNames(SOURCE_NAMESPACE)).not.to.include(t);
    const status = (await getCredential(t)).status!;
    expect(status.namespaces).to.deep.equal({ selected: 2, synced: 2, failed: 0, conflicting: 0 });
    expect(status.synced).to.equal('2/2');
    await deleteCredential(t);
  });

  it('never selects excluded namespaces, whatever their labels', async () => {
    const t = unique('excl');
    await tenantWorld(t, {
      namespaces: [`${t}-keep`, `${t}-skip-1`],
      select: 'label',
      spec: { namespaces: { selector: { matchLabels: { tenant: t } }, exclude: [`${t}-skip-*`] } },
    });
    expect(await getSecret(`${t}-keep`, t)).not.to.equal(undefined);
    expect(await getSecret(`${t}-skip-1`, t)).to.equal(undefined);
    expect((await getCredential(t)).status?.namespaces?.selected).to.equal(1);
    await deleteCredential(t);
  });

  it('appends its entry after the entries others wrote, leaving theirs untouched and in order', async () => {
    const t = unique('order');
    await createSource(t);
    await createNamespace(t, { tenant: t });
    await admin().mergePatch(`/api/v1/namespaces/${t}/serviceaccounts/default`, {
      imagePullSecrets: [{ name: 'team-b' }, { name: 'team-a' }],
    });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t] },
    });
    await waitForReady(t);
    expect(await pullSecretNames(t)).to.deep.equal(['team-b', 'team-a', t]);
    expect((await getServiceAccount(t)).metadata.annotations?.[PULL_SECRETS_ANNOTATION]).to.equal(
      JSON.stringify({ [t]: t }),
    );

    await deleteCredential(t);
    await eventually('regcred removed only its entry', async () => (await pullSecretNames(t)).length === 2);
    expect(await pullSecretNames(t)).to.deep.equal(['team-b', 'team-a']);
    expect((await getServiceAccount(t)).metadata.annotations?.[PULL_SECRETS_ANNOTATION]).to.equal(undefined);
  });

  it('keeps an entry of the same name that was there before it came, when it leaves', async () => {
    const t = unique('prior');
    await createSource(t);
    await createNamespace(t);
    await admin().mergePatch(`/api/v1/namespaces/${t}/serviceaccounts/default`, {
      imagePullSecrets: [{ name: t }],
    });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t] },
    });
    await waitForReady(t);
    expect(await pullSecretNames(t)).to.deep.equal([t]);
    expect((await getServiceAccount(t)).metadata.annotations?.[PULL_SECRETS_ANNOTATION]).to.equal(undefined);

    await deleteCredential(t);
    await waitForGone(`/api/v1/namespaces/${t}/secrets/${t}`);
    expect(await pullSecretNames(t)).to.deep.equal([t]);
  });

  it('gives a namespace created later its copy, and patches its default ServiceAccount when it appears', async () => {
    const t = unique('late');
    await tenantWorld(t, { namespaces: [], select: 'label' });
    // Created without waiting for anything: the copy comes from the Namespace event, the patch from
    // the ServiceAccount event that follows when the controller-manager creates `default`.
    await admin().create('/api/v1/namespaces', { metadata: { name: t, labels: { tenant: t } } });
    await eventually('the new namespace has the copy', () => getSecret(t, t));
    await eventually('its default ServiceAccount references the copy', async () =>
      (await pullSecretNames(t).catch((): string[] => [])).includes(t),
    );
    await waitForStatus(t, 'one namespace synced', (s) => s.namespaces?.synced === 1 && s.synced === '1/1');
    await deleteCredential(t);
  });

  it('patches a ServiceAccount created later, and one relabelled into the selector; relabelled out, its entry goes', async () => {
    const t = unique('sa');
    await tenantWorld(t, {
      spec: {
        serviceAccounts: { names: ['default', 'builder'], selector: { matchLabels: { pulls: 'private' } } },
      },
    });
    await createServiceAccount(t, 'builder');
    await createServiceAccount(t, 'runner');
    await eventually('builder references the copy', async () =>
      (await pullSecretNames(t, 'builder')).includes(t),
    );
    expect(await pullSecretNames(t, 'runner')).to.deep.equal([]);

    await admin().mergePatch(`/api/v1/namespaces/${t}/serviceaccounts/runner`, {
      metadata: { labels: { pulls: 'private' } },
    });
    await eventually('runner references the copy', async () =>
      (await pullSecretNames(t, 'runner')).includes(t),
    );
    await admin().mergePatch(`/api/v1/namespaces/${t}/serviceaccounts/runner`, {
      metadata: { labels: { pulls: null } },
    });
    await eventually(
      'runner no longer references it',
      async () => (await pullSecretNames(t, 'runner')).length === 0,
    );
    expect(await pullSecretNames(t, 'builder')).to.deep.equal([t]);
    await waitForStatus(t, 'two ServiceAccounts patched', (s) => s.serviceAccounts?.patched === 2);
    await deleteCredential(t);
  });

  it('patches every ServiceAccount for "*", and none when names is empty and there is no selector', async () => {
    const t = unique('star');
    await createSource(t);
    await createNamespace(`${t}-all`);
    await createNamespace(`${t}-none`);
    await createServiceAccount(`${t}-all`, 'app');
    await createServiceAccount(`${t}-none`, 'app');
    await createCredential(`${t}-all`, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      secretName: t,
      namespaces: { names: [`${t}-all`] },
      serviceAccounts: { names: ['*'] },
    });
    await createCredential(`${t}-none`, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      secretName: t,
      namespaces: { names: [`${t}-none`] },
      serviceAccounts: { names: [] },
    });
    await waitForReady(`${t}-all`);
    await waitForReady(`${t}-none`);
    expect(await pullSecretNames(`${t}-all`, 'default')).to.deep.equal([t]);
    expect(await pullSecretNames(`${t}-all`, 'app')).to.deep.equal([t]);
    expect(await getSecret(`${t}-none`, t)).not.to.equal(undefined);
    expect(await pullSecretNames(`${t}-none`, 'default')).to.deep.equal([]);
    expect(await pullSecretNames(`${t}-none`, 'app')).to.deep.equal([]);
    await deleteCredential(`${t}-all`);
    await deleteCredential(`${t}-none`);
  });

  it('removes its copy and entries from a namespace relabelled out of the selection or excluded', async () => {
    const t = unique('out');
    await tenantWorld(t, { namespaces: [`${t}-a`, `${t}-b`], select: 'label' });
    await admin().mergePatch(`/api/v1/namespaces/${t}-a`, { metadata: { labels: { tenant: null } } });
    await waitForGone(`/api/v1/namespaces/${t}-a/secrets/${t}`);
    expect(await pullSecretNames(`${t}-a`)).to.deep.equal([]);

    await patchCredentialSpec(t, {
      namespaces: { selector: { matchLabels: { tenant: t } }, exclude: [`${t}-b`] },
    });
    await waitForGone(`/api/v1/namespaces/${t}-b/secrets/${t}`);
    expect(await pullSecretNames(`${t}-b`)).to.deep.equal([]);
    const rc = await waitForReady(t);
    expect(rc.status?.namespaces?.selected).to.equal(0);
    await deleteCredential(t);
  });

  it('writes the copy before any ServiceAccount references it, and removes the reference before the copy', async () => {
    const t = unique('seq');
    await createSource(t);
    await createNamespace(t);
    // Record the order of changes as the API server commits them: resourceVersions of one etcd
    // increase with every write, so they order writes across object kinds.
    const seen: { what: string; rv: number }[] = [];
    const stop = new AbortController();
    const client = admin();
    const watchers = ['secrets', 'serviceaccounts'].map((kind) =>
      client.watch(
        `/api/v1/namespaces/${t}/${kind}`,
        { resourceVersion: '0' },
        (type, obj) => {
          const o = obj as {
            metadata: { name: string; resourceVersion: string };
            imagePullSecrets?: { name: string }[];
          };
          if (kind === 'secrets' && o.metadata.name === t)
            seen.push({ what: `secret ${type}`, rv: Number(o.metadata.resourceVersion) });
          if (kind === 'serviceaccounts' && o.metadata.name === 'default') {
            const refs = (o.imagePullSecrets ?? []).some((e) => e.name === t);
            seen.push({
              what: `sa ${refs ? 'references' : 'plain'}`,
              rv: Number(o.metadata.resourceVersion),
            });
          }
        },
        { signal: stop.signal, inactivityTimeoutMs: 60_000 },
      ),
    );
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t] },
    });
    await eventually('the SA references the copy', () => seen.some((s) => s.what === 'sa references'));
    await deleteCredential(t);
    await eventually('the copy is deleted', () => seen.some((s) => s.what === 'secret DELETED'));
    stop.abort();
    await Promise.all(watchers);

    const rv = (what: string) => seen.filter((s) => s.what === what).map((s) => s.rv);
    const created = Math.min(...rv('secret ADDED'));
    const referenced = Math.min(...rv('sa references'));
    const unreferenced = Math.max(...rv('sa plain'));
    const deleted = Math.max(...rv('secret DELETED'));
    expect(created).to.be.lessThan(referenced);
    expect(unreferenced).to.be.greaterThan(referenced);
    expect(unreferenced).to.be.lessThan(deleted);
  });

  it('leaves a terminating namespace alone and never blocks its deletion', async () => {
    const t = unique('term');
    await tenantWorld(t, { select: 'label' });
    const ns = await admin().get<{ metadata: { finalizers?: string[] }; spec: { finalizers?: string[] } }>(
      `/api/v1/namespaces/${t}`,
    );
    expect(ns.metadata.finalizers ?? []).not.to.include(FINALIZER);
    await admin().delete(`/api/v1/namespaces/${t}`);
    await waitForGone(`/api/v1/namespaces/${t}`, 60_000);
    const rc = await waitForReady(t);
    expect(rc.status?.namespaces).to.deep.equal({ selected: 0, synced: 0, failed: 0, conflicting: 0 });
    expect(
      op.requests.filter(
        (r) => r.includes(`/namespaces/${t}/`) && /\s(4|5)\d\d$/.test(r) && !/\s404$/.test(r),
      ),
    ).to.deep.equal([]);
    await deleteCredential(t);
  });
});
