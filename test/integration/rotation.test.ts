/**
 * Rotation and drift: a changed source reaches every copy in place, whatever someone changes in
 * regcred's copies and ServiceAccount entries is put back, and a changed spec (copy name,
 * namespace selection) moves the world to the new shape. The operator runs with no periodic
 * resync, so every convergence here comes from a watch event.
 */
import { expect } from 'chai';
import {
  CREDENTIAL_ANNOTATION,
  CREDENTIAL_LABEL,
  MANAGED_BY_LABEL,
  PULL_SECRETS_ANNOTATION,
  SOURCE_ANNOTATION,
  SOURCE_VERSION_ANNOTATION,
} from '../../src/regcred/objects.ts';
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
  eventsAbout,
  getCredential,
  getSecret,
  getServiceAccount,
  installRegcred,
  operatorSaw,
  patchCredentialSpec,
  pullSecretNames,
  type RunningOperator,
  type SecretJson,
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

/** The password for REGISTRY in a copy's credential, or undefined if there is none. */
function passwordIn(secret: SecretJson | undefined): string | undefined {
  const text = secret?.data?.['.dockerconfigjson'];
  if (!text) return undefined;
  return JSON.parse(Buffer.from(text, 'base64').toString()).auths?.[REGISTRY]?.password;
}

function credentialData(password: string): Record<string, string> {
  return { '.dockerconfigjson': b64(dockerConfig(REGISTRY, 'bot', password)) };
}

describe('rotation and drift', function () {
  this.timeout(60_000);
  let op: RunningOperator;

  before(async () => {
    await installRegcred();
    op = await startOperator({ name: 'rotation' });
  });
  after(async () => op?.stop());

  const operatorSawHere = (kind: 'copies' | 'serviceAccounts' | 'namespaces', key: string, rv: string) =>
    operatorSaw(op, kind, key, rv);

  it('rotates every copy in place when the source credential changes, and records the rotation', async () => {
    const t = unique('rot');
    const namespaces = [`${t}-a`, `${t}-b`, `${t}-c`];
    const { source, credential: first } = await tenantWorld(t, {
      source: { data: credentialData('pw-before') },
      namespaces,
      select: 'label',
    });
    expect(first.status?.sourceResourceVersion).to.equal(source.metadata.resourceVersion);
    expect(first.status?.lastRotationTime).to.equal(undefined);
    const uids = new Map<string, string>();
    for (const ns of namespaces) {
      const copy = (await getSecret(ns, t))!;
      expect(passwordIn(copy)).to.equal('pw-before');
      uids.set(ns, copy.metadata.uid);
    }

    const mark = op.requests.length;
    const rotatedAfter = Math.floor(Date.now() / 1000) * 1000; // status times have whole seconds
    const updated = await updateSource(t, credentialData('pw-after'));
    await eventually('every copy holds the new credential', async () => {
      for (const ns of namespaces) if (passwordIn(await getSecret(ns, t)) !== 'pw-after') return false;
      return true;
    });
    for (const ns of namespaces) {
      const copy = (await getSecret(ns, t))!;
      expect(copy.metadata.uid, `${ns}: the same Secret, updated in place`).to.equal(uids.get(ns));
      expect(await pullSecretNames(ns)).to.deep.equal([t]);
    }

    const rc = await waitForStatus(
      t,
      'the rotation is recorded',
      (s) => s.sourceResourceVersion === updated.metadata.resourceVersion && s.lastRotationTime !== undefined,
    );
    expect(Date.parse(rc.status!.lastRotationTime!)).to.be.at.least(rotatedAfter);
    expect(rc.status?.synced).to.equal('3/3');
    expect(rc.status?.conditions?.find((c) => c.type === 'Ready')?.status).to.equal('True');
    const rotated = await eventually('a Rotated event is recorded on the RegistryCredential', async () =>
      (await eventsAbout('default', t)).find((e) => e.reason === 'Rotated'),
    );
    expect(rotated.type).to.equal('Normal');
    expect(rotated.message).to.include('3 namespaces');
    // A rotation is not drift: no copy got a DriftRestored warning.
    for (const ns of namespaces) {
      expect((await eventsAbout(ns, t)).map((e) => e.reason)).not.to.include('DriftRestored');
    }
    // Driven by the source's watch: nothing of this test was read from the API meanwhile.
    expect(op.requests.slice(mark).filter((r) => r.startsWith('GET ') && r.includes(t))).to.deep.equal([]);
    await deleteCredential(t);
  });

  it('leaves the copies untouched when the source changes only in formatting', async () => {
    const t = unique('fmt');
    const password = 'fmt-pw-1';
    const auth = b64(`bot:${password}`);
    await tenantWorld(t, {
      source: {
        data: {
          '.dockerconfigjson': b64(
            JSON.stringify({ auths: { [REGISTRY]: { username: 'bot', password, auth } } }),
          ),
        },
      },
    });
    const before = (await getSecret(t, t))!;

    const reformatted = `{\n  "auths": {\n    "${REGISTRY}": {\n      "auth": "${auth}",\n      "password": "${password}",\n      "username": "bot"\n    }\n  }\n}\n`;
    const updated = await updateSource(t, { '.dockerconfigjson': b64(reformatted) });
    // The operator has taken the new source version in (the status names it)...
    const rc = await waitForStatus(
      t,
      'the new source version is recorded',
      (s) => s.sourceResourceVersion === updated.metadata.resourceVersion,
    );
    // ...and, the credential being the same, wrote no copy and recorded no rotation.
    expect((await getSecret(t, t))!.metadata.resourceVersion).to.equal(before.metadata.resourceVersion);
    expect(rc.status?.lastRotationTime).to.equal(undefined);
    expect((await eventsAbout('default', t)).map((e) => e.reason)).not.to.include('Rotated');
    await deleteCredential(t);
  });

  it('writes byte-identical copies for the same credential, whatever the key order and whitespace of its source', async () => {
    const t = unique('canon');
    const password = 'canon-pw-1';
    const auth = b64(`bot:${password}`); // 14 bytes: padded with one '='
    expect(auth.endsWith('=')).to.equal(true);
    const compact = JSON.stringify({ auths: { [REGISTRY]: { username: 'bot', password, auth } } });
    const pretty = `{ "auths" : {\n\t"${REGISTRY}" : { "auth":"${auth.replace(/=+$/, '')}",\n "password" : "${password}", "username":"bot" } } }`;
    await createSource(`${t}-compact`, { data: { '.dockerconfigjson': b64(compact) } });
    await createSource(`${t}-pretty`, { data: { '.dockerconfigjson': b64(pretty) } });
    await createNamespace(t);
    for (const form of ['compact', 'pretty']) {
      await createCredential(`${t}-${form}`, {
        source: { secretRef: { namespace: SOURCE_NAMESPACE, name: `${t}-${form}` } },
        namespaces: { names: [t] },
        serviceAccounts: { names: [] },
      });
    }
    await waitForReady(`${t}-compact`);
    await waitForReady(`${t}-pretty`);

    const fromCompact = (await getSecret(t, `${t}-compact`))!.data!['.dockerconfigjson'];
    const fromPretty = (await getSecret(t, `${t}-pretty`))!.data!['.dockerconfigjson'];
    expect(b64(compact)).not.to.equal(b64(pretty));
    expect(fromPretty).to.equal(fromCompact);
    expect(Buffer.from(fromCompact!, 'base64').toString()).to.equal(
      `{"auths":{"${REGISTRY}":{"auth":"${auth}","password":"${password}","username":"bot"}}}`,
    );
    await deleteCredential(`${t}-compact`);
    await deleteCredential(`${t}-pretty`);
  });

  it('restores a copy whose credential someone edited, and drops data keys it does not own', async () => {
    const t = unique('drift');
    await tenantWorld(t, { source: { data: credentialData('pw-good') } });
    const original = (await getSecret(t, t))!;

    await admin().mergePatch(`/api/v1/namespaces/${t}/secrets/${t}`, {
      data: {
        '.dockerconfigjson': b64(dockerConfig('evil.example.com', 'mallory', 'pw-evil')),
        extra: b64('someone else'),
      },
    });
    const restored = await eventually('the copy holds the source credential again, and only it', async () => {
      const copy = (await getSecret(t, t))!;
      return JSON.stringify(copy.data) === JSON.stringify(original.data) ? copy : undefined;
    });
    expect(restored.metadata.uid).to.equal(original.metadata.uid);
    expect(passwordIn(restored)).to.equal('pw-good');
    const warning = await eventually('a DriftRestored event is recorded about the copy', async () =>
      (await eventsAbout(t, t)).find((e) => e.reason === 'DriftRestored'),
    );
    expect(warning.type).to.equal('Warning');
    // Restoring drift is not a rotation.
    const rc = await waitForReady(t);
    expect(rc.status?.lastRotationTime).to.equal(undefined);
    expect((await eventsAbout('default', t)).map((e) => e.reason)).not.to.include('Rotated');
    await deleteCredential(t);
  });

  it('keeps the labels and annotations others add to a copy, and restores its own that someone removed, even the label its watch selects on', async () => {
    const t = unique('meta');
    await tenantWorld(t);
    const original = (await getSecret(t, t))!;
    const path = `/api/v1/namespaces/${t}/secrets/${t}`;

    // Someone else's label and annotation: nothing of regcred's changed, so regcred writes nothing.
    const annotated = await admin().mergePatch<SecretJson>(path, {
      metadata: { labels: { team: 'payments' }, annotations: { 'example.com/owner': 'team-payments' } },
    });
    await operatorSawHere('copies', `${t}/${t}`, annotated.metadata.resourceVersion);
    expect((await getSecret(t, t))!.metadata.resourceVersion).to.equal(annotated.metadata.resourceVersion);

    // Removing the managed-by label takes the copy out of regcred's label-selected watch.
    await admin().mergePatch(path, {
      metadata: { labels: { [MANAGED_BY_LABEL]: null }, annotations: { [SOURCE_ANNOTATION]: null } },
    });
    const restored = await eventually('regcred put its label and annotation back', async () => {
      const copy = (await getSecret(t, t))!;
      return copy.metadata.labels?.[MANAGED_BY_LABEL] === 'regcred' &&
        copy.metadata.annotations?.[SOURCE_ANNOTATION]
        ? copy
        : undefined;
    });
    expect(restored.metadata.uid).to.equal(original.metadata.uid);
    expect(restored.metadata.labels).to.deep.equal({
      [MANAGED_BY_LABEL]: 'regcred',
      [CREDENTIAL_LABEL]: t,
      team: 'payments',
    });
    expect(restored.metadata.annotations).to.deep.equal({
      [CREDENTIAL_ANNOTATION]: t,
      [SOURCE_ANNOTATION]: `${SOURCE_NAMESPACE}/${t}`,
      [SOURCE_VERSION_ANNOTATION]: original.metadata.annotations?.[SOURCE_VERSION_ANNOTATION],
      'example.com/owner': 'team-payments',
    });
    expect(restored.data).to.deep.equal(original.data);
    const warning = await eventually('a DriftRestored event is recorded about the copy', async () =>
      (await eventsAbout(t, t)).find((e) => e.reason === 'DriftRestored'),
    );
    expect(warning.type).to.equal('Warning');
    await deleteCredential(t);
  });

  it('recreates a copy that someone deleted', async () => {
    const t = unique('recreate');
    const { credential: rc } = await tenantWorld(t, { source: { data: credentialData('pw-recreate') } });
    const original = (await getSecret(t, t))!;

    await admin().delete(`/api/v1/namespaces/${t}/secrets/${t}`);
    const recreated = await eventually('the copy is back', async () => {
      const copy = await getSecret(t, t);
      return copy && copy.metadata.uid !== original.metadata.uid ? copy : undefined;
    });
    expect(recreated.type).to.equal('kubernetes.io/dockerconfigjson');
    expect(recreated.data).to.deep.equal(original.data);
    expect(passwordIn(recreated)).to.equal('pw-recreate');
    expect(recreated.metadata.ownerReferences?.map((r) => r.uid)).to.deep.equal([rc.metadata.uid]);
    expect(await pullSecretNames(t)).to.deep.equal([t]);
    // Deleting regcred's copy is drift too: reported on the new copy, and not a rotation.
    const warning = await eventually('a DriftRestored event is recorded about the recreated copy', async () =>
      (await eventsAbout(t, t)).find((e) => e.reason === 'DriftRestored'),
    );
    expect(warning.type).to.equal('Warning');
    expect(warning.message).to.contain('deleted');
    await waitForStatus(t, 'still synced', (s) => s.synced === '1/1');
    const ready = await waitForReady(t);
    expect(ready.status?.lastRotationTime).to.equal(undefined);
    await deleteCredential(t);
  });

  it('tells drift from rotation by the source version on the copy, even while the fan-out cannot finish', async () => {
    // One namespace holds someone else's Secret of that name, so the credential never reaches every
    // namespace and its status never records a propagated source version.
    const t = unique('drift-stuck');
    const [good, taken] = [`${t}-a`, `${t}-b`];
    await createSource(t, { data: credentialData('pw-one') });
    await createNamespace(good);
    await createNamespace(taken);
    await admin().create(`/api/v1/namespaces/${taken}/secrets`, {
      metadata: { name: t },
      type: 'Opaque',
      data: { note: b64('not a copy') },
    });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [good, taken] },
    });
    await waitForReady(t, 'False', 'Conflicts');
    // A change of the source's labels moves its resourceVersion, not its credential.
    await admin().mergePatch(`/api/v1/namespaces/${SOURCE_NAMESPACE}/secrets/${t}`, {
      metadata: { labels: { 'example.com/audited': 'yes' } },
    });
    const before = (await getSecret(good, t))!;
    expect((await getCredential(t)).status?.sourceResourceVersion).to.equal(undefined);

    await admin().mergePatch(`/api/v1/namespaces/${good}/secrets/${t}`, {
      data: { '.dockerconfigjson': b64(dockerConfig(REGISTRY, 'mallory', 'pw-evil')) },
    });
    await eventually('the edited copy is restored', async () =>
      passwordIn(await getSecret(good, t)) === 'pw-one' ? true : undefined,
    );
    const warning = await eventually('the edit is reported as drift', async () =>
      (await eventsAbout(good, t)).find((e) => e.reason === 'DriftRestored'),
    );
    expect(warning.type).to.equal('Warning');

    // A real rotation is still a rotation, and drift nowhere.
    await updateSource(t, credentialData('pw-two'));
    const rotated = await eventually('the copy follows the rotation', async () => {
      const copy = await getSecret(good, t);
      return passwordIn(copy) === 'pw-two' ? copy : undefined;
    });
    expect(rotated.metadata.annotations?.[SOURCE_VERSION_ANNOTATION]).to.not.equal(
      before.metadata.annotations?.[SOURCE_VERSION_ANNOTATION],
    );
    expect((await eventsAbout(good, t)).filter((e) => e.reason === 'DriftRestored')).to.have.length(1);
    await deleteCredential(t);
  });

  it('puts back its imagePullSecrets entry that someone removed, after the entries others wrote', async () => {
    const t = unique('entry');
    await createSource(t);
    await createNamespace(t);
    await admin().mergePatch(`/api/v1/namespaces/${t}/serviceaccounts/default`, {
      imagePullSecrets: [{ name: 'team-a' }],
    });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t] },
    });
    await waitForReady(t);
    expect(await pullSecretNames(t)).to.deep.equal(['team-a', t]);

    // Only the list entry goes; regcred's annotation recording it stays.
    const edited = await admin().mergePatch<{ imagePullSecrets?: { name: string }[] }>(
      `/api/v1/namespaces/${t}/serviceaccounts/default`,
      { imagePullSecrets: [{ name: 'team-a' }] },
    );
    expect(edited.imagePullSecrets).to.deep.equal([{ name: 'team-a' }]);
    await eventually('the entry is back', async () => (await pullSecretNames(t)).includes(t));
    expect(await pullSecretNames(t)).to.deep.equal(['team-a', t]);
    expect((await getServiceAccount(t)).metadata.annotations?.[PULL_SECRETS_ANNOTATION]).to.equal(
      JSON.stringify({ [t]: t }),
    );
    await deleteCredential(t);
  });

  it('moves every namespace to a new secretName: new copies and references, the old ones removed', async () => {
    const t = unique('rename');
    const [oldName, newName] = [`${t}-old`, `${t}-new`];
    const namespaces = [`${t}-a`, `${t}-b`];
    await createSource(t);
    for (const ns of namespaces) {
      await createNamespace(ns);
      await createServiceAccount(ns, 'builder');
    }
    await admin().mergePatch(`/api/v1/namespaces/${t}-a/serviceaccounts/default`, {
      imagePullSecrets: [{ name: 'team-a' }],
    });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      secretName: oldName,
      namespaces: { names: namespaces },
      serviceAccounts: { names: ['default', 'builder'] },
    });
    await waitForReady(t);
    for (const ns of namespaces) expect(await getSecret(ns, oldName), ns).not.to.equal(undefined);
    expect(await pullSecretNames(`${t}-a`)).to.deep.equal(['team-a', oldName]);

    await patchCredentialSpec(t, { secretName: newName });
    await eventually('every namespace moved to the new name', async () => {
      for (const ns of namespaces) {
        if (!(await getSecret(ns, newName)) || (await getSecret(ns, oldName))) return false;
        for (const sa of ['default', 'builder']) {
          const names = await pullSecretNames(ns, sa);
          if (!names.includes(newName) || names.includes(oldName)) return false;
        }
      }
      return true;
    });
    for (const ns of namespaces) {
      const copy = (await getSecret(ns, newName))!;
      expect(copy.metadata.labels?.[CREDENTIAL_LABEL]).to.equal(t);
      expect(passwordIn(copy)).to.equal(`pw-${t}`);
      expect(await getSecret(ns, oldName)).to.equal(undefined);
      for (const sa of ['default', 'builder']) {
        expect(
          (await getServiceAccount(ns, sa)).metadata.annotations?.[PULL_SECRETS_ANNOTATION],
          `${ns}/${sa}`,
        ).to.equal(JSON.stringify({ [newName]: t }));
      }
    }
    expect(await pullSecretNames(`${t}-a`)).to.deep.equal(['team-a', newName]);
    expect(await pullSecretNames(`${t}-b`)).to.deep.equal([newName]);
    const rc = await waitForReady(t);
    expect(rc.metadata.generation).to.equal(2);
    expect(rc.status?.secretName).to.equal(newName);
    expect(rc.status?.serviceAccounts?.patched).to.equal(4);
    await deleteCredential(t);
  });

  it('follows a changed namespace selector: namespaces left out are cleaned up, newly selected ones get copies', async () => {
    const t = unique('resel');
    const [onlyOld, both, onlyNew] = [`${t}-old`, `${t}-both`, `${t}-new`];
    await createSource(t);
    await createNamespace(onlyOld, { tenant: t });
    await createNamespace(both, { tenant: t, group: t });
    await createNamespace(onlyNew, { group: t });
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { selector: { matchLabels: { tenant: t } } },
    });
    await waitForReady(t);
    expect(await getSecret(onlyOld, t)).not.to.equal(undefined);
    expect(await getSecret(onlyNew, t)).to.equal(undefined);
    const bothUid = (await getSecret(both, t))!.metadata.uid;

    // A merge patch merges matchLabels: the old key must be removed explicitly.
    await patchCredentialSpec(t, { namespaces: { selector: { matchLabels: { tenant: null, group: t } } } });
    await waitForGone(`/api/v1/namespaces/${onlyOld}/secrets/${t}`);
    await eventually(`${onlyNew} has its copy and its reference`, async () =>
      (await pullSecretNames(onlyNew)).includes(t),
    );
    expect(await pullSecretNames(onlyOld)).to.deep.equal([]);
    expect((await getServiceAccount(onlyOld)).metadata.annotations?.[PULL_SECRETS_ANNOTATION]).to.equal(
      undefined,
    );
    expect(await getSecret(onlyNew, t)).not.to.equal(undefined);
    expect((await getSecret(both, t))?.metadata.uid, 'the copy in a namespace still selected stays').to.equal(
      bothUid,
    );
    expect(await pullSecretNames(both)).to.deep.equal([t]);
    const removed = await eventually(`a CopyRemoved event is recorded in ${onlyOld}`, async () =>
      (await eventsAbout(onlyOld, t)).find((e) => e.reason === 'CopyRemoved'),
    );
    expect(removed.type).to.equal('Normal');
    const rc = await waitForStatus(t, 'two namespaces synced', (s) => s.synced === '2/2');
    expect(rc.status?.namespaces).to.deep.equal({ selected: 2, synced: 2, failed: 0, conflicting: 0 });
    expect((await getCredential(t)).metadata.generation).to.equal(2);
    await deleteCredential(t);
  });
});
