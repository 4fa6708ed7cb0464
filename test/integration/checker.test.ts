/**
 * The invariant checker (test/support/checker.ts) that the fault scenarios rely on: silent over a
 * converged world, and reporting each kind of violation, with the object and the time, when one is
 * injected while no operator runs to repair it.
 */
import { expect } from 'chai';
import { PULL_SECRETS_ANNOTATION } from '../../src/regcred/objects.ts';
import { Checker, type ViolationKind } from '../support/checker.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  b64,
  createServiceAccount,
  deleteCredential,
  dockerConfig,
  getServiceAccount,
  installRegcred,
  type RunningOperator,
  startOperator,
  tenantWorld,
  unique,
  waitForGone,
  waitForStatus,
} from '../support/world.ts';

describe('the invariant checker', function () {
  this.timeout(120_000);
  let op: RunningOperator | undefined;
  let checker: Checker | undefined;
  before(installRegcred);
  afterEach(async () => {
    await checker?.stop();
    await op?.stop();
    op = undefined;
  });

  it('finds nothing in a converged world, then reports a stale copy, a copy in an unselected namespace, a lost foreign entry, a missing entry, orphans and a status that disagrees', async () => {
    const t = unique('checker');
    const [a, b] = [`${t}-a`, `${t}-b`];
    op = await startOperator({ name: t });
    const { credential } = await tenantWorld(t, {
      namespaces: [a, b],
      select: 'label',
      spec: { serviceAccounts: { names: ['default', 'ci'] } },
      ready: false,
    });
    await createServiceAccount(a, 'ci', { imagePullSecrets: ['theirs'] });
    await waitForStatus(t, 'both namespaces and three ServiceAccounts synced', (s) =>
      Boolean(
        s.namespaces?.synced === 2 &&
          s.serviceAccounts?.patched === 3 &&
          s.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      ),
    );
    const mine = (kind: ViolationKind) =>
      checker?.violations.find(
        (v) => v.kind === kind && (v.object.startsWith(t) || v.credential?.startsWith(t)),
      );

    checker = new Checker(admin(), { boundMs: 1500, intervalMs: 300 });
    checker.start();
    await eventually('the checker took three snapshots', () => checker!.rounds.ok >= 3);
    expect(checker.current.filter((p) => p.object.startsWith(t) || p.credential === t)).to.deep.equal([]);
    expect(checker.violations.filter((v) => v.credential === t || v.object.startsWith(t))).to.deep.equal([]);

    await op.stop();
    op = undefined;
    const client = admin();
    const injectedAt = Date.now();
    // A stale copy: the data of another credential.
    await client.mergePatch(`/api/v1/namespaces/${a}/secrets/${t}`, {
      data: { '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', 'an-old-password')) },
    });
    // A copy in a namespace that is no longer selected.
    await client.mergePatch(`/api/v1/namespaces/${b}`, { metadata: { labels: { tenant: null } } });
    // A lost foreign entry, and a missing entry of regcred's.
    const ci = await getServiceAccount(a, 'ci');
    await client.request('PUT', `/api/v1/namespaces/${a}/serviceaccounts/ci`, {
      body: { ...ci, imagePullSecrets: ci.imagePullSecrets?.filter((e) => e.name !== 'theirs') },
    });
    // Orphans: a copy and a recorded entry of a RegistryCredential that does not exist.
    const ghost = `${t}-ghost`;
    await client.create(`/api/v1/namespaces/${a}/secrets`, {
      metadata: {
        name: ghost,
        labels: { 'app.kubernetes.io/managed-by': 'regcred', 'regcred.dev/credential': ghost },
      },
      type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', 'x')) },
    });
    const def = await getServiceAccount(a);
    await client.request('PUT', `/api/v1/namespaces/${a}/serviceaccounts/default`, {
      body: {
        ...def,
        metadata: {
          ...def.metadata,
          annotations: {
            ...def.metadata.annotations,
            [PULL_SECRETS_ANNOTATION]: JSON.stringify({ [ghost]: ghost }),
          },
        },
        imagePullSecrets: [{ name: ghost }],
      },
    });

    const expected: [ViolationKind, string][] = [
      ['stale-copy', `${a}/${t}`],
      ['unselected-copy', `${b}/${t}`],
      ['lost-foreign-entry', `${a}/ci`],
      ['missing-entry', `${a}/default`],
      ['orphan-copy', `${a}/${ghost}`],
      ['orphan-entry', `${a}/default`],
      ['status-mismatch', t],
    ];
    for (const [kind, object] of expected) {
      const v = await eventually(`the checker reports ${kind} ${object}`, () => mine(kind), {
        timeoutMs: 20_000,
      });
      expect(v.object, kind).to.equal(object);
      expect(Date.parse(v.at), `${kind} found after the injection`).to.be.at.least(injectedAt);
      if (kind === 'lost-foreign-entry') expect(v.detail).to.equal('theirs');
      else expect(v.persistedMs, `${kind} persisted past the bound first`).to.be.at.least(1500);
    }
    expect(credential.metadata.name).to.equal(t);

    // Clean up with an operator again (it owns the finalizer).
    await client.delete(`/api/v1/namespaces/${a}/secrets/${ghost}`);
    const injected = await getServiceAccount(a);
    delete injected.metadata.annotations?.[PULL_SECRETS_ANNOTATION];
    await client.request('PUT', `/api/v1/namespaces/${a}/serviceaccounts/default`, {
      body: { ...injected, imagePullSecrets: [] },
    });
    op = await startOperator({ name: `${t}-cleanup` });
    await deleteCredential(t);
    await waitForGone(`/apis/regcred.dev/v1alpha1/registrycredentials/${t}`);
  });
});
