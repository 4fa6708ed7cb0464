/**
 * Conflicts and tenants: Secrets regcred does not own are never written (Skip) unless adoption is
 * asked for and possible (Adopt); looking like a copy is not owning one; two credentials never
 * fight over one name; and nothing outside the selected namespaces is touched.
 */
import { expect } from 'chai';
import {
  CREDENTIAL_ANNOTATION,
  CREDENTIAL_LABEL,
  MANAGED_BY_LABEL,
  PULL_SECRETS_ANNOTATION,
  SOURCE_ANNOTATION,
} from '../../src/regcred/objects.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  b64,
  createCredential,
  createNamespace,
  createSource,
  deleteCredential,
  dockerConfig,
  eventsAbout,
  getSecret,
  getServiceAccount,
  installRegcred,
  pullSecretNames,
  RC_PATH,
  type RunningOperator,
  type SecretJson,
  SOURCE_NAMESPACE,
  startOperator,
  unique,
  waitForGone,
  waitForReady,
  waitForStatus,
} from '../support/world.ts';

/** A Secret someone other than regcred put there. */
async function createForeignSecret(
  namespace: string,
  name: string,
  options: {
    type?: string;
    data?: Record<string, string>;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  } = {},
): Promise<SecretJson> {
  return admin().create(`/api/v1/namespaces/${namespace}/secrets`, {
    metadata: { name, labels: options.labels, annotations: options.annotations },
    type: options.type ?? 'kubernetes.io/dockerconfigjson',
    data: options.data ?? {
      '.dockerconfigjson': b64(dockerConfig('tenant.example.com', 'tenant', 'pw-tenant')),
    },
  });
}

/** Asserts that a Secret is exactly as it was: same object, same version, same content and metadata. */
async function expectUnchanged(before: SecretJson): Promise<void> {
  const { namespace, name } = before.metadata;
  const now = await getSecret(namespace!, name);
  expect(now, `${namespace}/${name} still exists`).not.to.equal(undefined);
  expect(now!.metadata.uid).to.equal(before.metadata.uid);
  expect(now!.metadata.resourceVersion, `${namespace}/${name} was not written`).to.equal(
    before.metadata.resourceVersion,
  );
  expect(now!.type).to.equal(before.type);
  expect(now!.data).to.deep.equal(before.data);
  expect(now!.metadata.labels).to.deep.equal(before.metadata.labels);
  expect(now!.metadata.annotations).to.deep.equal(before.metadata.annotations);
  expect(now!.metadata.ownerReferences).to.deep.equal(before.metadata.ownerReferences);
}

function passwordIn(copy: SecretJson | undefined, registry = 'registry.example.com'): string | undefined {
  const doc = JSON.parse(Buffer.from(copy!.data!['.dockerconfigjson']!, 'base64').toString());
  return doc.auths?.[registry]?.password;
}

function ownerUids(secret: SecretJson | undefined): string[] {
  return (secret?.metadata.ownerReferences ?? []).map((r) => r.uid);
}

describe('conflicts and tenants', function () {
  this.timeout(60_000);
  let op: RunningOperator;

  before(async () => {
    await installRegcred();
    op = await startOperator({ name: 'conflicts' });
  });
  after(async () => op?.stop());

  it('leaves a Secret it does not own and that namespace alone under Skip, syncs the others, and reports the conflict', async () => {
    const t = unique('skip');
    const [blocked, free] = [`${t}-blocked`, `${t}-free`];
    await createSource(t);
    await createNamespace(blocked);
    await createNamespace(free);
    const foreign = await createForeignSecret(blocked, t, { labels: { team: 'payments' } });
    const saBefore = await getServiceAccount(blocked);
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [blocked, free] },
    });
    const rc = await waitForReady(t, 'False', 'Conflicts');

    await expectUnchanged(foreign);
    const saAfter = await getServiceAccount(blocked);
    expect(saAfter.metadata.resourceVersion, 'the blocked namespace SA was not written').to.equal(
      saBefore.metadata.resourceVersion,
    );
    expect(saAfter.imagePullSecrets ?? []).to.deep.equal([]);

    expect(passwordIn(await getSecret(free, t))).to.equal(`pw-${t}`);
    expect(await pullSecretNames(free)).to.deep.equal([t]);

    expect(rc.status?.namespaces).to.deep.equal({ selected: 2, synced: 1, failed: 0, conflicting: 1 });
    expect(rc.status?.failures).to.have.length(1);
    expect(rc.status?.failures?.[0]).to.include({ namespace: blocked, reason: 'Conflict' });
    await eventually('a Warning Conflict event about the tenant Secret', async () =>
      (await eventsAbout(blocked, t)).some((e) => e.type === 'Warning' && e.reason === 'Conflict'),
    );
    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
    await expectUnchanged(foreign);
  });

  it('adopts a foreign kubernetes.io/dockerconfigjson Secret under Adopt, keeping others’ labels, and removes it on deletion', async () => {
    const t = unique('adopt');
    await createSource(t);
    await createNamespace(t);
    const foreign = await createForeignSecret(t, t, {
      labels: { team: 'payments' },
      annotations: { 'team.example.com/owner': 'payments' },
      data: {
        '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'old', 'pw-old')),
        notes: b64('left over'),
      },
    });
    const rc = await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t] },
      conflictPolicy: 'Adopt',
    });
    await waitForReady(t);

    const adopted = (await getSecret(t, t))!;
    expect(adopted.metadata.uid, 'the same Secret, not a replacement').to.equal(foreign.metadata.uid);
    expect(adopted.metadata.ownerReferences).to.deep.equal([
      {
        apiVersion: 'regcred.dev/v1alpha1',
        kind: 'RegistryCredential',
        name: t,
        uid: rc.metadata.uid,
        controller: true,
      },
    ]);
    expect(adopted.metadata.labels).to.deep.equal({
      team: 'payments',
      [MANAGED_BY_LABEL]: 'regcred',
      [CREDENTIAL_LABEL]: t,
    });
    expect(adopted.metadata.annotations).to.include({
      'team.example.com/owner': 'payments',
      [CREDENTIAL_ANNOTATION]: t,
      [SOURCE_ANNOTATION]: `${SOURCE_NAMESPACE}/${t}`,
    });
    expect(Object.keys(adopted.data ?? {})).to.deep.equal(['.dockerconfigjson']);
    expect(passwordIn(adopted)).to.equal(`pw-${t}`);
    expect(await pullSecretNames(t)).to.deep.equal([t]);
    await eventually('a Normal Adopted event about the Secret', async () =>
      (await eventsAbout(t, t)).some((e) => e.type === 'Normal' && e.reason === 'Adopted'),
    );

    await deleteCredential(t);
    await waitForGone(`/api/v1/namespaces/${t}/secrets/${t}`);
    expect(await pullSecretNames(t)).to.deep.equal([]);
  });

  it('does not adopt a foreign Secret of another type under Adopt, and reports the conflict', async () => {
    const t = unique('opaque');
    await createSource(t);
    await createNamespace(t);
    const foreign = await createForeignSecret(t, t, { type: 'Opaque', data: { token: b64('tenant-token') } });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t] },
      conflictPolicy: 'Adopt',
    });
    const rc = await waitForReady(t, 'False', 'Conflicts');
    await expectUnchanged(foreign);
    expect(await pullSecretNames(t)).to.deep.equal([]);
    expect(rc.status?.namespaces).to.deep.equal({ selected: 1, synced: 0, failed: 0, conflicting: 1 });
    expect(rc.status?.failures?.[0]).to.include({ namespace: t, reason: 'Conflict' });
    expect(rc.status?.failures?.[0]?.message).to.include('cannot be adopted');
    await eventually('a Warning Conflict event about the Secret', async () =>
      (await eventsAbout(t, t)).some((e) => e.type === 'Warning' && e.reason === 'Conflict'),
    );
    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
    await expectUnchanged(foreign);
  });

  it('treats a Secret that only looks like its copy as foreign: neither adopted under Skip nor deleted with the credential', async () => {
    const t = unique('lookalike');
    const [real, fake] = [`${t}-real`, `${t}-fake`];
    await createSource(t);
    await createNamespace(real);
    await createNamespace(fake);
    // A copy's manifest applied by hand (or restored from elsewhere): regcred's labels and
    // annotations, but no ownerReference to the live credential.
    const lookalike = await createForeignSecret(fake, t, {
      labels: { [MANAGED_BY_LABEL]: 'regcred', [CREDENTIAL_LABEL]: t },
      annotations: { [CREDENTIAL_ANNOTATION]: t, [SOURCE_ANNOTATION]: `${SOURCE_NAMESPACE}/${t}` },
    });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [real, fake] },
    });
    const rc = await waitForReady(t, 'False', 'Conflicts');
    expect(rc.status?.failures?.map((f) => f.namespace)).to.deep.equal([fake]);
    await expectUnchanged(lookalike);
    expect(await pullSecretNames(fake)).to.deep.equal([]);
    expect(ownerUids(await getSecret(real, t))).to.deep.equal([rc.metadata.uid]);

    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
    await waitForGone(`/api/v1/namespaces/${real}/secrets/${t}`);
    await expectUnchanged(lookalike);
  });

  it('lets the older of two credentials keep a name both claim in a namespace, and hands it to the younger when the older goes', async () => {
    const t = unique('claim');
    const [early, late] = [`${t}-early`, `${t}-late`];
    await createSource(t);
    await createNamespace(early, { tenant: t });
    // Named so that the name tie-break would favour the younger: only age can make the older win.
    const [older, younger] = [`${t}-z-older`, `${t}-a-younger`];
    const spec = {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      secretName: t,
      namespaces: { selector: { matchLabels: { tenant: t } } },
    };
    const first = await createCredential(older, spec);
    await waitForReady(older);
    // creationTimestamp has a resolution of one second: wait until this machine's clock (the API
    // server's too) is in a later second, so the two cannot be the same second.
    await eventually(
      "the clock is past the older credential's second",
      () => Date.now() >= Date.parse(first.metadata.creationTimestamp!) + 1000,
    );
    const second = await createCredential(younger, spec);
    expect(second.metadata.creationTimestamp! > first.metadata.creationTimestamp!).to.equal(true);

    const conflicted = await waitForReady(younger, 'False', 'Conflicts');
    expect(conflicted.status?.failures?.map((f) => f.namespace)).to.deep.equal([early]);
    expect(conflicted.status?.failures?.[0]?.reason).to.equal('ClaimedByOlderCredential');
    expect(ownerUids(await getSecret(early, t))).to.deep.equal([first.metadata.uid]);
    expect(await pullSecretNames(early)).to.deep.equal([t]);
    expect((await getServiceAccount(early)).metadata.annotations?.[PULL_SECRETS_ANNOTATION]).to.equal(
      JSON.stringify({ [t]: older }),
    );

    // A namespace that both select from the moment it appears: both reconcile it at once, and
    // which one keeps it is decided by age alone, not by who got there first.
    await createNamespace(late, { tenant: t });
    const both = await waitForStatus(
      younger,
      'two namespaces conflicting',
      (s) => s.namespaces?.conflicting === 2,
    );
    expect(both.status?.failures?.map((f) => f.namespace)).to.deep.equal([early, late]);
    for (const f of both.status?.failures ?? []) {
      expect(f.reason).to.equal('ClaimedByOlderCredential');
    }
    await waitForStatus(older, 'two namespaces synced', (s) => s.namespaces?.synced === 2);
    expect((await waitForReady(older)).status?.namespaces?.conflicting).to.equal(0);
    for (const ns of [early, late]) {
      expect(ownerUids(await getSecret(ns, t)), `${ns}/${t} is the older's`).to.deep.equal([
        first.metadata.uid,
      ]);
      await eventually(`${ns}/default references the copy`, async () =>
        (await pullSecretNames(ns)).includes(t),
      );
      expect(await pullSecretNames(ns), `a single entry in ${ns}`).to.deep.equal([t]);
    }

    await deleteCredential(older);
    await waitForGone(`${RC_PATH}/${older}`);
    for (const ns of [early, late]) {
      await eventually(`${ns}/${t} belongs to the younger credential`, async () => {
        const uids = ownerUids(await getSecret(ns, t));
        return uids.length === 1 && uids[0] === second.metadata.uid;
      });
    }
    const ready = await waitForReady(younger);
    expect(ready.status?.namespaces).to.deep.equal({ selected: 2, synced: 2, failed: 0, conflicting: 0 });
    expect(ready.status?.failures).to.equal(undefined);
    for (const ns of [early, late]) {
      expect(await pullSecretNames(ns)).to.deep.equal([t]);
      expect((await getServiceAccount(ns)).metadata.annotations?.[PULL_SECRETS_ANNOTATION]).to.equal(
        JSON.stringify({ [t]: younger }),
      );
    }
    await deleteCredential(younger);
  });

  it('hands a copy over to an older credential in place, with no moment where the entry points at nothing', async () => {
    const t = unique('handover');
    await createSource(t);
    const spec = (selector: Record<string, string>) => ({
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      secretName: t,
      namespaces: { selector: { matchLabels: selector } },
    });
    // The older credential selects nothing yet; the younger one serves the namespace first.
    const older = await createCredential(`${t}-older`, spec({ group: t }));
    // creationTimestamp has a resolution of one second: wait until the clock is in a later second
    // than the older one's, so that age is unambiguous.
    await eventually(
      "the clock is past the older credential's second",
      () => Date.now() >= Date.parse(older.metadata.creationTimestamp!) + 1000,
    );
    const younger = await createCredential(`${t}-younger`, spec({ tenant: t }));
    await createNamespace(t, { tenant: t });
    await waitForStatus(`${t}-younger`, 'the namespace synced', (s) => s.namespaces?.synced === 1);
    const copyUid = (await getSecret(t, t))!.metadata.uid;

    // Watch every change to the copy and the default ServiceAccount from here on: from a
    // resourceVersion read now, so no change is missed however late the watches connect.
    const seen: string[] = [];
    const stop = new AbortController();
    const from = (
      await admin().get<{ metadata: { resourceVersion: string } }>(`/api/v1/namespaces/${t}/secrets`)
    ).metadata.resourceVersion;
    const watchers = ['secrets', 'serviceaccounts'].map((kind) =>
      admin().watch(
        `/api/v1/namespaces/${t}/${kind}`,
        { resourceVersion: from },
        (type, obj) => {
          const o = obj as { metadata: { name: string }; imagePullSecrets?: { name: string }[] };
          if (kind === 'secrets' && o.metadata.name === t) seen.push(`secret ${type}`);
          if (kind === 'serviceaccounts' && o.metadata.name === 'default') {
            seen.push(
              `sa ${(o.imagePullSecrets ?? []).some((e) => e.name === t) ? 'references' : 'has no entry'}`,
            );
          }
        },
        { signal: stop.signal, inactivityTimeoutMs: 60_000 },
      ),
    );

    // Now the older one selects the namespace too, and the younger one goes away.
    await admin().mergePatch(`/api/v1/namespaces/${t}`, { metadata: { labels: { group: t } } });
    await eventually('the older credential holds the copy and the entry', async () => {
      const copy = await getSecret(t, t);
      const sa = await getServiceAccount(t);
      return (
        ownerUids(copy).join() === older.metadata.uid &&
        sa.metadata.annotations?.[PULL_SECRETS_ANNOTATION] === JSON.stringify({ [t]: `${t}-older` })
      );
    });
    await deleteCredential(`${t}-younger`);
    await waitForGone(`${RC_PATH}/${t}-younger`);
    await waitForReady(`${t}-older`);
    stop.abort();
    await Promise.all(watchers);

    const copy = (await getSecret(t, t))!;
    expect(copy.metadata.uid, 'the same Secret, taken over in place').to.equal(copyUid);
    expect(ownerUids(copy)).to.deep.equal([older.metadata.uid]);
    expect(ownerUids(copy)).not.to.include(younger.metadata.uid);
    expect(await pullSecretNames(t)).to.deep.equal([t]);
    expect(seen.filter((e) => e === 'secret DELETED' || e === 'sa has no entry')).to.deep.equal([]);
    expect((await eventsAbout(t, t)).map((e) => e.reason)).to.include('Adopted');
    await deleteCredential(`${t}-older`);
  });

  it('never touches a namespace it does not select, even one holding its copy name, its entry and an annotation crediting it', async () => {
    const t = unique('outside');
    const [inside, outside, later] = [`${t}-in`, `${t}-out`, `${t}-later`];
    await createSource(t);
    await createNamespace(inside, { tenant: t });
    await createNamespace(outside, { tenant: 'someone-else' });
    const secret = await createForeignSecret(outside, t);
    // The annotation regcred records its entries in, naming this very credential: anyone can write
    // it, so it must not be enough to make regcred act here.
    await admin().mergePatch(`/api/v1/namespaces/${outside}/serviceaccounts/default`, {
      metadata: { annotations: { [PULL_SECRETS_ANNOTATION]: JSON.stringify({ [t]: t }) } },
      imagePullSecrets: [{ name: t }],
    });
    const sa = await getServiceAccount(outside);
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { selector: { matchLabels: { tenant: t } } },
    });
    const rc = await waitForReady(t);
    expect(rc.status?.namespaces?.selected).to.equal(1);
    expect(ownerUids(await getSecret(inside, t))).to.deep.equal([rc.metadata.uid]);

    // Make regcred look at the unselected namespace (a Namespace event queues it for every
    // credential), then give it later work in a selected one: its queue is FIFO, so by the time the
    // later namespace is served, the unselected one has been reconciled too.
    await admin().mergePatch(`/api/v1/namespaces/${outside}`, { metadata: { labels: { touched: 'yes' } } });
    await createNamespace(later, { tenant: t });
    await eventually('the later namespace is served', async () => (await pullSecretNames(later)).includes(t));
    await waitForStatus(t, 'two namespaces synced', (s) => s.namespaces?.synced === 2);

    await expectUnchanged(secret);
    const saNow = await getServiceAccount(outside);
    expect(saNow.metadata.resourceVersion).to.equal(sa.metadata.resourceVersion);
    expect(saNow.imagePullSecrets).to.deep.equal([{ name: t }]);
    expect(op.requests.filter((r) => r.includes(`/namespaces/${outside}/`))).to.deep.equal([]);

    await deleteCredential(t);
    await waitForGone(`${RC_PATH}/${t}`);
    await expectUnchanged(secret);
    expect((await getServiceAccount(outside)).metadata.resourceVersion).to.equal(sa.metadata.resourceVersion);
    expect(op.requests.filter((r) => r.includes(`/namespaces/${outside}/`))).to.deep.equal([]);
  });

  it('converges a namespace once the Secret that blocked it is gone, at the next event it watches there', async () => {
    const t = unique('unblock');
    await createSource(t);
    await createNamespace(t);
    const foreign = await createForeignSecret(t, t);
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t] },
    });
    await waitForReady(t, 'False', 'Conflicts');

    await admin().delete(`/api/v1/namespaces/${t}/secrets/${t}`, { uid: foreign.metadata.uid });
    await waitForGone(`/api/v1/namespaces/${t}/secrets/${t}`);
    // regcred watches only Secrets labelled as its copies, so the deletion of an unlabelled Secret
    // is no event for it (and there is no periodic resync here). Any event it does watch in that
    // namespace reconciles it again: here, a label added to the Namespace.
    await admin().mergePatch(`/api/v1/namespaces/${t}`, { metadata: { labels: { touched: 'yes' } } });

    await eventually('the copy appears', () => getSecret(t, t));
    const rc = await waitForReady(t);
    const copy = (await getSecret(t, t))!;
    expect(copy.metadata.uid).not.to.equal(foreign.metadata.uid);
    expect(ownerUids(copy)).to.deep.equal([rc.metadata.uid]);
    expect(passwordIn(copy)).to.equal(`pw-${t}`);
    expect(await pullSecretNames(t)).to.deep.equal([t]);
    expect(rc.status?.namespaces).to.deep.equal({ selected: 1, synced: 1, failed: 0, conflicting: 0 });
    expect(rc.status?.failures).to.equal(undefined);
    await deleteCredential(t);
  });
});
