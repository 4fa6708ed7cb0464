/**
 * Bad input: sources that cannot be propagated (missing, of another type, malformed by kubelet's
 * rules, outside the allowed namespaces), specs the schema cannot judge, and specs the schema
 * rejects. Nothing bad ever reaches a tenant, the last good copy stays, and status says why.
 */
import { expect } from 'chai';
import { API_VERSION } from '../../src/api/v1alpha1.ts';
import { CREDENTIAL_LABEL, PULL_SECRETS_ANNOTATION } from '../../src/regcred/objects.ts';
import { ApiError } from '../../src/runtime/kube.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  b64,
  condition,
  createCredential,
  createNamespace,
  createSource,
  deleteCredential,
  dockerConfig,
  eventsAbout,
  getSecret,
  getServiceAccount,
  installRegcred,
  operatorIdle,
  pullSecretNames,
  RC_PATH,
  type RunningOperator,
  type SecretJson,
  SOURCE_NAMESPACE,
  startOperator,
  tenantWorld,
  unique,
  updateSource,
  waitForReady,
  waitForStatus,
} from '../support/world.ts';

/** Every Secret in the cluster labelled as a copy of this credential. */
async function copiesOf(rc: string): Promise<SecretJson[]> {
  const list = await admin().get<{ items: SecretJson[] }>('/api/v1/secrets', {
    labelSelector: `${CREDENTIAL_LABEL}=${rc}`,
  });
  return list.items;
}

/** The credential inside a copy, parsed. */
function credentialIn(copy: SecretJson | undefined): {
  auths: Record<string, Record<string, string>>;
} {
  return JSON.parse(Buffer.from(copy!.data!['.dockerconfigjson']!, 'base64').toString());
}

/** Asserts that nothing of this credential exists in `namespaces` (no copy, no entry), nor any labelled copy anywhere. */
async function expectNothingWritten(rc: string, namespaces: string[]): Promise<void> {
  expect(await copiesOf(rc)).to.deep.equal([]);
  for (const ns of namespaces) {
    expect(await getSecret(ns, rc), `no Secret ${ns}/${rc}`).to.equal(undefined);
    const sa = await getServiceAccount(ns);
    expect(sa.imagePullSecrets ?? [], `${ns}/default has no entry`).to.deep.equal([]);
    expect(sa.metadata.annotations?.[PULL_SECRETS_ANNOTATION]).to.equal(undefined);
  }
}

async function warningsAbout(rc: string): Promise<{ reason: string; message: string }[]> {
  return (await eventsAbout('default', rc)).filter((e) => e.type === 'Warning');
}

describe('bad input', function () {
  this.timeout(60_000);
  let op: RunningOperator;

  before(async () => {
    await installRegcred();
    op = await startOperator({ name: 'bad-input' });
  });
  after(async () => op?.stop());

  it('propagates a legacy kubernetes.io/dockercfg source as a kubernetes.io/dockerconfigjson copy with auths', async () => {
    const t = unique('legacy');
    const entry = {
      username: 'old-bot',
      password: 'pw-legacy',
      email: 'bot@example.com',
      auth: b64('old-bot:pw-legacy'),
    };
    const { credential: rc } = await tenantWorld(t, {
      source: {
        type: 'kubernetes.io/dockercfg',
        data: { '.dockercfg': b64(JSON.stringify({ 'legacy.example.com': entry })) },
      },
    });
    expect(condition(rc, 'SourceValid')?.status).to.equal('True');

    const copy = (await getSecret(t, t))!;
    expect(copy.type).to.equal('kubernetes.io/dockerconfigjson');
    expect(Object.keys(copy.data ?? {})).to.deep.equal(['.dockerconfigjson']);
    expect(credentialIn(copy)).to.deep.equal({ auths: { 'legacy.example.com': entry } });
    expect(await pullSecretNames(t)).to.deep.equal([t]);
    await deleteCredential(t);
  });

  it('reports a missing source, warns, writes nothing, and converges when the source appears', async () => {
    const t = unique('missing');
    await createNamespace(`${t}-a`);
    await createNamespace(`${t}-b`);
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [`${t}-a`, `${t}-b`] },
    });
    const rc = await waitForReady(t, 'False', 'SourceInvalid');
    expect(condition(rc, 'SourceValid')).to.include({ status: 'False', reason: 'SourceNotFound' });
    expect(condition(rc, 'SourceValid')?.message).to.include(`${SOURCE_NAMESPACE}/${t}`);
    await eventually('a Warning event about the missing source', async () =>
      (await warningsAbout(t)).some((e) => e.reason === 'SourceNotFound'),
    );
    await expectNothingWritten(t, [`${t}-a`, `${t}-b`]);

    // Only the source watch can bring this about: the operator runs with no periodic resync.
    await createSource(t, {
      data: { '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', 'pw-late')) },
    });
    const ready = await waitForReady(t);
    expect(condition(ready, 'SourceValid')).to.include({ status: 'True', reason: 'Valid' });
    for (const ns of [`${t}-a`, `${t}-b`]) {
      expect(credentialIn(await getSecret(ns, t)).auths['registry.example.com']?.password).to.equal(
        'pw-late',
      );
      expect(await pullSecretNames(ns)).to.deep.equal([t]);
    }
    expect(ready.status?.namespaces).to.deep.equal({ selected: 2, synced: 2, failed: 0, conflicting: 0 });
    await deleteCredential(t);
  });

  it('refuses a source of another type (Opaque, basic-auth), even one holding a valid .dockerconfigjson', async () => {
    const t = unique('type');
    await createNamespace(t);
    await createSource(`${t}-opaque`, {
      type: 'Opaque',
      data: { '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', 'pw-opaque')) },
    });
    await createSource(`${t}-basic`, {
      type: 'kubernetes.io/basic-auth',
      data: { username: b64('bot'), password: b64('pw-basic') },
    });
    for (const kind of ['opaque', 'basic']) {
      await createCredential(`${t}-${kind}`, {
        source: { secretRef: { namespace: SOURCE_NAMESPACE, name: `${t}-${kind}` } },
        namespaces: { names: [t] },
      });
    }
    for (const kind of ['opaque', 'basic']) {
      const rc = await waitForReady(`${t}-${kind}`, 'False', 'SourceInvalid');
      expect(condition(rc, 'SourceValid')).to.include({ status: 'False', reason: 'SourceWrongType' });
      await expectNothingWritten(`${t}-${kind}`, [t]);
    }
    await deleteCredential(`${t}-opaque`);
    await deleteCredential(`${t}-basic`);
  });

  it('refuses a dockercfg source that holds a dockerconfigjson document, saying what to do, with a Warning', async () => {
    // kubelet reads it as one registry named "auths": valid to kubelet, and useless.
    const t = unique('cfg-auths');
    await tenantWorld(t, {
      source: {
        type: 'kubernetes.io/dockercfg',
        data: { '.dockercfg': b64(dockerConfig('registry.example.com', 'bot', 'pw-mistyped')) },
      },
      ready: false,
    });
    const rc = await waitForReady(t, 'False', 'SourceInvalid');
    const sourceValid = condition(rc, 'SourceValid');
    expect(sourceValid).to.include({ status: 'False', reason: 'SourceWrongType' });
    expect(sourceValid?.message)
      .to.contain('holds a kubernetes.io/dockerconfigjson document')
      .and.contain('recreate the Secret with type kubernetes.io/dockerconfigjson');
    await eventually('a Warning Event on the RegistryCredential names the mistake', async () =>
      (await warningsAbout(t)).some((e) =>
        /holds a kubernetes\.io\/dockerconfigjson document/.test(e.message),
      ),
    );
    await expectNothingWritten(t, [t]);
    await deleteCredential(t);
  });

  it('keeps the last good copies unchanged while the source is malformed, and converges once it is fixed', async () => {
    const t = unique('malformed');
    const namespaces = [`${t}-a`, `${t}-b`];
    await tenantWorld(t, {
      source: { data: { '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', 'pw-good')) } },
      namespaces,
    });
    const good = new Map<string, SecretJson>();
    for (const ns of namespaces) good.set(ns, (await getSecret(ns, t))!);

    // Valid JSON (the API server accepts it) but kubelet would refuse it: `auth` is not base64.
    await updateSource(t, {
      '.dockerconfigjson': b64(
        JSON.stringify({ auths: { 'registry.example.com': { auth: 'not base64!' } } }),
      ),
    });
    const broken = await waitForStatus(
      t,
      'SourceValid=False (SourceMalformed), Ready=False (SourceInvalid)',
      (s) =>
        s.conditions?.some(
          (c) => c.type === 'SourceValid' && c.status === 'False' && c.reason === 'SourceMalformed',
        ) === true &&
        s.conditions?.some(
          (c) => c.type === 'Ready' && c.status === 'False' && c.reason === 'SourceInvalid',
        ) === true,
    );
    expect(condition(broken, 'SourceValid')?.message).to.include('auth is not valid base64');
    expect(condition(broken, 'SourceValid')?.message).not.to.include('not base64!');
    await eventually('a Warning event about the malformed source', async () =>
      (await warningsAbout(t)).some((e) => e.reason === 'SourceMalformed'),
    );
    // Every namespace key the broken source queued has run before the copies are compared.
    await operatorIdle(op);
    for (const ns of namespaces) {
      const now = (await getSecret(ns, t))!;
      const before = good.get(ns)!;
      expect(now.metadata.resourceVersion, `${ns}/${t} untouched`).to.equal(before.metadata.resourceVersion);
      expect(now.data).to.deep.equal(before.data);
      expect(await pullSecretNames(ns)).to.deep.equal([t]);
    }

    const fixed = await updateSource(t, {
      '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', 'pw-new')),
    });
    const ready = await waitForStatus(
      t,
      'Ready=True with the fixed source propagated',
      (s) =>
        s.sourceResourceVersion === fixed.metadata.resourceVersion &&
        s.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true,
    );
    expect(condition(ready, 'SourceValid')).to.include({ status: 'True', reason: 'Valid' });
    for (const ns of namespaces) {
      expect(credentialIn(await getSecret(ns, t)).auths['registry.example.com']?.password).to.equal('pw-new');
      expect(await pullSecretNames(ns)).to.deep.equal([t]);
    }
    await deleteCredential(t);
  });

  it('reads nothing from a source namespace it is not allowed to use, and says so', async () => {
    const t = unique('notallowed');
    const elsewhere = `${t}-src`;
    await createNamespace(elsewhere);
    await createSource(t, { namespace: elsewhere });
    await createNamespace(t);
    await createCredential(t, {
      source: { secretRef: { namespace: elsewhere, name: t } },
      namespaces: { names: [t] },
    });
    const rc = await waitForReady(t, 'False', 'SourceNotAllowed');
    expect(condition(rc, 'SourceValid')).to.include({ status: 'False', reason: 'SourceNotAllowed' });
    expect(condition(rc, 'SourceValid')?.message).to.include(SOURCE_NAMESPACE);
    await expectNothingWritten(t, [t]);
    expect(op.requests.filter((r) => r.includes(`/namespaces/${elsewhere}/secrets`))).to.deep.equal([]);
    await deleteCredential(t);
  });

  it('reports a selector the schema cannot judge as InvalidSpec, naming the problem, and writes nothing', async () => {
    const t = unique('invalid');
    await createSource(t);
    await createNamespace(t);
    // A label key prefix must be a DNS subdomain of at most 253 characters. The CRD's CEL rule
    // checks only the total length (≤ 317) and the shape, so this 255-character prefix gets in.
    const prefix = Array.from({ length: 4 }, () => 'a'.repeat(63)).join('.');
    const key = `${prefix}/tenant`;
    expect(prefix.length).to.equal(255);
    expect(key.length).to.be.at.most(317);
    // The namespace is also named, so a selector wrongly ignored would still let a copy through.
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { names: [t], selector: { matchLabels: { [key]: t } } },
    });
    const rc = await waitForReady(t, 'False', 'InvalidSpec');
    const message = condition(rc, 'Ready')?.message ?? '';
    expect(message).to.include('spec.namespaces.selector');
    expect(message).to.include('prefix longer than 253 characters');
    await expectNothingWritten(t, [t]);
    await deleteCredential(t);
  });

  describe('the schema', () => {
    const valid = (name: string) => ({
      apiVersion: API_VERSION,
      kind: 'RegistryCredential',
      metadata: { name },
      spec: {
        source: { secretRef: { namespace: SOURCE_NAMESPACE, name } },
        namespaces: { names: [name] } as Record<string, unknown>,
      } as Record<string, unknown>,
    });
    const cases: { what: string; body: (name: string) => ReturnType<typeof valid>; says: string[] }[] = [
      {
        what: 'a spec selecting no namespaces (no names, no selector)',
        body: (n) => ({ ...valid(n), spec: { ...valid(n).spec, namespaces: {} } }),
        says: ['select namespaces by names, by selector, or both'],
      },
      {
        what: 'conflictPolicy Overwrite',
        body: (n) => ({ ...valid(n), spec: { ...valid(n).spec, conflictPolicy: 'Overwrite' } }),
        says: ['spec.conflictPolicy', 'Overwrite'],
      },
      {
        what: 'a source namespace that is not a DNS label (Bad_NS)',
        body: (n) => ({
          ...valid(n),
          spec: { ...valid(n).spec, source: { secretRef: { namespace: 'Bad_NS', name: n } } },
        }),
        says: ['spec.source.secretRef.namespace', 'Bad_NS'],
      },
      {
        what: 'a selector expression In without values',
        body: (n) => ({
          ...valid(n),
          spec: {
            ...valid(n).spec,
            namespaces: { selector: { matchExpressions: [{ key: 'tenant', operator: 'In' }] } },
          },
        }),
        says: ['values must be non-empty for In and NotIn'],
      },
      {
        what: 'a name longer than 63 characters',
        // 64 characters, one too many. Only the name is long: the spec, which repeats it, stays valid.
        body: (n) => ({ ...valid(n), metadata: { name: `${n}-${'x'.repeat(63 - n.length)}` } }),
        says: ['at most 63 characters'],
      },
    ];

    it('accepts the spec the cases below each break in one place', async () => {
      const name = unique('schema');
      await admin().create(RC_PATH, valid(name));
      await deleteCredential(name);
    });

    for (const c of cases) {
      it(`rejects ${c.what} with 422 and a clear message`, async () => {
        const body = c.body(unique('schema'));
        let rejection: ApiError | undefined;
        try {
          await admin().create(RC_PATH, body);
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          rejection = err;
        }
        if (!rejection) {
          await deleteCredential(body.metadata.name);
          expect.fail(`the API server accepted ${c.what}`);
        }
        expect(rejection.code).to.equal(422);
        for (const s of c.says) expect(rejection.message).to.include(s);
        // Nothing was stored.
        await admin()
          .get(`${RC_PATH}/${body.metadata.name}`)
          .then(
            () => expect.fail('the rejected RegistryCredential exists'),
            (err: unknown) => expect(err instanceof ApiError && err.code).to.equal(404),
          );
      });
    }
  });
});
