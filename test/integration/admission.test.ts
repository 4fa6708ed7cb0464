/**
 * The Pod injection policy (`config/admission`) on the shared control plane, with no operator
 * running unless a test says so: every entry a Pod gets then comes from the policy. Pods are
 * created with `dryRun=All` (admitted, never stored, so no node is needed).
 *
 * kube-apiserver reads policies, bindings and RegistryCredentials from its caches, which lag the
 * API briefly. A test that changes a RegistryCredential waits with `caughtUp()`: it creates a
 * marker credential for a namespace of its own and waits until a Pod there gets the marker's
 * entry. The cache is filled from one watch, in order, so everything written before the marker is
 * then in it. No test sleeps.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import type { RegistryCredential } from '../../src/api/v1alpha1.ts';
import { projectNamespace } from '../../src/regcred/objects.ts';
import { ApiError, type KubeClient } from '../../src/runtime/kube.ts';
import {
  admissionObjectPath,
  admissionObjects,
  awaitInjection,
  CONFIG,
  dryRunPod,
  dryRunPullSecrets,
  expectedInjection,
  policyChecks,
  rejection,
} from '../support/admission.ts';
import { cluster } from '../support/cluster.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  type CredentialSpec,
  createCredential,
  createNamespace,
  createServiceAccount,
  deleteCredential,
  getServiceAccount,
  installRegcred,
  kubectl,
  RC_PATH,
  SOURCE_NAMESPACE,
  startOperator,
  tenantWorld,
  unique,
  waitForGone,
} from '../support/world.ts';

const ADMISSION = `${CONFIG}/admission`;
const HOLD = 'test.regcred.dev/hold';
const OPT_OUT = 'regcred.dev/inject-pull-secrets';

/** The policy's evaluations so far, by outcome (kube-apiserver's metric). */
async function checks(): Promise<Record<string, number>> {
  return policyChecks((await cluster().get('/metrics')).body);
}

function errorsBetween(before: Record<string, number>, after: Record<string, number>): number {
  return ['invalid_error', 'compile_error', 'out_of_budget'].reduce(
    (sum, t) => sum + (after[t] ?? 0) - (before[t] ?? 0),
    0,
  );
}

describe('the Pod injection policy (config/admission)', function () {
  this.timeout(60_000);
  let client: KubeClient;
  /** Selected by the marker credentials of `caughtUp()` only (and by random selectors of the property test). */
  let markerNamespace: string;
  const credentials: string[] = [];
  const namespaces: string[] = [];

  /** A RegistryCredential (source: the source namespace, name = its own), removed after the test. */
  async function credential(name: string, spec: Omit<CredentialSpec, 'source'>, finalizers?: string[]) {
    credentials.push(name);
    return admin().create<RegistryCredential>(RC_PATH, {
      apiVersion: 'regcred.dev/v1alpha1',
      kind: 'RegistryCredential',
      metadata: { name, finalizers },
      spec: { source: { secretRef: { namespace: SOURCE_NAMESPACE, name } }, ...spec },
    });
  }

  async function namespace(prefix: string, labels: Record<string, string> = {}): Promise<string> {
    const name = unique(prefix);
    namespaces.push(name);
    await createNamespace(name, labels);
    return name;
  }

  /** Deletes a credential whatever finalizers it carries, and does not wait. */
  async function forceDelete(name: string): Promise<void> {
    await client.mergePatch(`${RC_PATH}/${name}`, { metadata: { finalizers: null } }).catch(() => {});
    await deleteCredential(name);
  }

  /** Waits until kube-apiserver's caches hold every RegistryCredential written so far. */
  async function caughtUp(): Promise<void> {
    const marker = unique('marker');
    await createCredential(marker, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: marker } },
      namespaces: { names: [markerNamespace] },
    });
    await awaitInjection(client, markerNamespace, marker);
    // It selects only the marker namespace: its deletion need not be awaited.
    deleteCredential(marker).catch(() => {});
  }

  before(async function () {
    this.timeout(120_000);
    await installRegcred();
    client = admin();
    await kubectl('apply', '-k', ADMISSION);
    markerNamespace = await namespace('marker');
    await caughtUp();
  });

  afterEach(async () => {
    await Promise.all(credentials.splice(0).map(forceDelete));
  });

  after(async function () {
    this.timeout(120_000);
    await kubectl('delete', '-k', ADMISSION, '--wait=true', '--ignore-not-found');
    for (const obj of admissionObjects('admission')) await waitForGone(admissionObjectPath(obj));
    // Other tests of this run must not meet the policy: wait until kube-apiserver dropped it too.
    const last = unique('marker');
    await createCredential(last, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: last } },
      namespaces: { names: [markerNamespace] },
    });
    await eventually('kube-apiserver no longer applies the policy', async () => {
      const names = await dryRunPullSecrets(client, markerNamespace, { imagePullSecrets: ['own'] });
      return !names.includes(last);
    });
    await deleteCredential(last);
    for (const ns of namespaces) await client.delete(`/api/v1/namespaces/${ns}`).catch(() => {});
  });

  it('is what kubectl apply -k config/admission installs: a policy and a binding, failurePolicy Ignore', async () => {
    const objects = admissionObjects('admission');
    expect(objects.map((o) => o.kind)).to.deep.equal([
      'MutatingAdmissionPolicy',
      'MutatingAdmissionPolicyBinding',
    ]);
    for (const obj of objects) {
      const live = await client.get<{ spec: Record<string, unknown> }>(admissionObjectPath(obj));
      // The API server adds defaults to the match rules; everything else is as shipped.
      for (const [field, value] of Object.entries(obj.spec)) {
        if (field !== 'matchConstraints' && field !== 'matchResources')
          expect(live.spec[field], `${obj.kind} spec.${field}`).to.deep.equal(value);
      }
    }
    expect(objects[0]!.spec.failurePolicy).to.equal('Ignore');
  });

  describe('the patch, branch by branch', () => {
    let ns: string;
    beforeEach(async () => {
      ns = await namespace('inject');
    });

    it('a Pod that lists no pull secrets gets the entry (the first branch: the whole list)', async () => {
      await credential(unique('one'), { secretName: 'acme-pull', namespaces: { names: [ns] } });
      await caughtUp();
      const before = await checks();
      expect(await dryRunPullSecrets(client, ns)).to.deep.equal(['acme-pull']);
      expect(await dryRunPullSecrets(client, ns, { imagePullSecrets: [] }), 'an empty list').to.deep.equal([
        'acme-pull',
      ]);
      const after = await checks();
      expect(errorsBetween(before, after)).to.equal(0);
      expect((after.no_error ?? 0) - (before.no_error ?? 0)).to.be.at.least(2);
    });

    it("a Pod that lists its own keeps them first and in order, regcred's after (the second branch: one more entry)", async () => {
      await credential(unique('one'), { secretName: 'acme-pull', namespaces: { names: [ns] } });
      await caughtUp();
      expect(await dryRunPullSecrets(client, ns, { imagePullSecrets: ['zeta', 'alpha'] })).to.deep.equal([
        'zeta',
        'alpha',
        'acme-pull',
      ]);
    });

    it('a Pod that names the copy itself gets no second entry (the third branch: nothing)', async () => {
      await credential(unique('one'), { secretName: 'acme-pull', namespaces: { names: [ns] } });
      await caughtUp();
      expect(await dryRunPullSecrets(client, ns, { imagePullSecrets: ['acme-pull', 'other'] })).to.deep.equal(
        ['acme-pull', 'other'],
      );
    });

    it("entries copied from the ServiceAccount come first and are not duplicated; a Pod's own replace them", async () => {
      await client.mergePatch(`/api/v1/namespaces/${ns}/serviceaccounts/default`, {
        imagePullSecrets: [{ name: 'team-pull' }, { name: 'acme-pull' }],
      });
      await credential(unique('one'), { secretName: 'acme-pull', namespaces: { names: [ns] } });
      await caughtUp();
      // The ServiceAccount admission plugin copies the ServiceAccount's list into a Pod that lists none.
      expect(await dryRunPullSecrets(client, ns)).to.deep.equal(['team-pull', 'acme-pull']);
      // A Pod with a list of its own gets no copy of the ServiceAccount's, but still regcred's entry.
      expect(await dryRunPullSecrets(client, ns, { imagePullSecrets: ['mine'] })).to.deep.equal([
        'mine',
        'acme-pull',
      ]);
    });

    it("two RegistryCredentials for one namespace give two entries, after the Pod's own", async () => {
      await credential(unique('first'), { secretName: 'first-pull', namespaces: { names: [ns] } });
      await credential(unique('second'), { secretName: 'second-pull', namespaces: { names: [ns] } });
      await caughtUp();
      // The API server evaluates the credentials in no fixed order: the two entries in either order.
      const withOwn = await dryRunPullSecrets(client, ns, { imagePullSecrets: ['mine'] });
      expect(withOwn[0]).to.equal('mine');
      expect(withOwn.slice(1).sort()).to.deep.equal(['first-pull', 'second-pull']);
      expect((await dryRunPullSecrets(client, ns)).sort()).to.deep.equal(['first-pull', 'second-pull']);
    });

    it('two RegistryCredentials with the same secretName give one entry', async () => {
      await credential(unique('first'), { secretName: 'shared-pull', namespaces: { names: [ns] } });
      await credential(unique('second'), { secretName: 'shared-pull', namespaces: { names: [ns] } });
      await caughtUp();
      expect(await dryRunPullSecrets(client, ns)).to.deep.equal(['shared-pull']);
    });

    it("without secretName, the entry is the RegistryCredential's name", async () => {
      const name = unique('named');
      await credential(name, { namespaces: { names: [ns] } });
      await caughtUp();
      expect(await dryRunPullSecrets(client, ns)).to.deep.equal([name]);
    });
  });

  describe('what is selected', () => {
    it('a suspended RegistryCredential injects nothing; resumed, it injects again', async () => {
      const ns = await namespace('suspended');
      const name = unique('suspended');
      await credential(name, { namespaces: { names: [ns] }, suspend: true });
      await caughtUp();
      expect(await dryRunPullSecrets(client, ns)).to.deep.equal([]);
      await client.mergePatch(`${RC_PATH}/${name}`, { spec: { suspend: false } });
      await caughtUp();
      expect(await dryRunPullSecrets(client, ns)).to.deep.equal([name]);
    });

    it('a RegistryCredential being deleted injects nothing', async () => {
      const ns = await namespace('deleting');
      const name = unique('deleting');
      await credential(name, { namespaces: { names: [ns] } }, [HOLD]);
      await caughtUp();
      expect(await dryRunPullSecrets(client, ns)).to.deep.equal([name]);
      await client.delete(`${RC_PATH}/${name}`);
      const held = await client.get<RegistryCredential>(`${RC_PATH}/${name}`);
      expect(held.metadata.deletionTimestamp, 'held by its finalizer').to.be.a('string');
      await caughtUp();
      expect(await dryRunPullSecrets(client, ns)).to.deep.equal([]);
    });

    it("the source Secret's namespace gets nothing, though named and matched by the selector", async () => {
      const label = { [`inject.test/${unique('l')}`]: 'yes' };
      const source = await namespace('source', label);
      const tenant = await namespace('tenant', label);
      const name = unique('src');
      credentials.push(name);
      await client.create(RC_PATH, {
        apiVersion: 'regcred.dev/v1alpha1',
        kind: 'RegistryCredential',
        metadata: { name },
        spec: {
          source: { secretRef: { namespace: source, name: 'pull' } },
          namespaces: { names: [source, tenant], selector: { matchLabels: label } },
        },
      });
      await caughtUp();
      expect(await dryRunPullSecrets(client, source)).to.deep.equal([]);
      expect(await dryRunPullSecrets(client, tenant)).to.deep.equal([name]);
    });

    it('an excluded namespace gets nothing, though named and matched by the selector', async () => {
      const label = { [`inject.test/${unique('l')}`]: 'yes' };
      const kept = await namespace('kept', label);
      const left = await namespace('left', label);
      const name = unique('excl');
      await credential(name, {
        namespaces: {
          names: [kept, left],
          selector: { matchLabels: label },
          exclude: [`${left.slice(0, 3)}*`],
        },
      });
      await caughtUp();
      expect(await dryRunPullSecrets(client, kept)).to.deep.equal([name]);
      expect(await dryRunPullSecrets(client, left)).to.deep.equal([]);
    });

    it('ServiceAccounts: by name or "*"; not by label (admission cannot read it); never for a copies-only credential', async () => {
      const ns = await namespace('sa');
      await createServiceAccount(ns, 'builder', { labels: { 'pulls-private': 'true' } });
      await createServiceAccount(ns, 'other');
      const byName = unique('byname');
      const star = unique('star');
      const byLabel = unique('bylabel');
      const copiesOnly = unique('copies');
      await credential(byName, { namespaces: { names: [ns] }, serviceAccounts: { names: ['builder'] } });
      await credential(star, { namespaces: { names: [ns] }, serviceAccounts: { names: ['*'] } });
      await credential(byLabel, {
        namespaces: { names: [ns] },
        serviceAccounts: { selector: { matchLabels: { 'pulls-private': 'true' } } },
      });
      await credential(copiesOnly, { namespaces: { names: [ns] }, serviceAccounts: { names: [] } });
      await caughtUp();
      const pod = async (serviceAccountName: string) =>
        (await dryRunPullSecrets(client, ns, { serviceAccountName })).sort();
      expect(await pod('builder')).to.deep.equal([byName, star].sort());
      expect(await pod('other')).to.deep.equal([star]);
      expect(await pod('default')).to.deep.equal([star]);
    });

    it(`a namespace labelled ${OPT_OUT}=false is left out`, async () => {
      const out = await namespace('optout', { [OPT_OUT]: 'false' });
      const name = unique('optout');
      await credential(name, { namespaces: { names: [out], selector: {} } });
      await caughtUp();
      expect(await dryRunPullSecrets(client, out)).to.deep.equal([]);
    });

    it('a mirror Pod (which may not reference Secrets) is left alone', async () => {
      const ns = await namespace('mirror');
      const name = unique('mirror');
      await credential(name, { namespaces: { names: [ns] } });
      await caughtUp();
      const pod = await dryRunPod(client, ns, {
        annotations: { 'kubernetes.io/config.mirror': 'static' },
        nodeName: 'some-node',
      });
      expect(pod.spec.imagePullSecrets ?? []).to.deep.equal([]);
      expect(pod.metadata.annotations).to.have.property('kubernetes.io/config.mirror');
    });

    it('a ServiceAccount enforcing mountable secrets refuses the Pod until its own list names the entry', async () => {
      const ns = await namespace('strict');
      await client.create(`/api/v1/namespaces/${ns}/serviceaccounts`, {
        metadata: { name: 'strict', annotations: { 'kubernetes.io/enforce-mountable-secrets': 'true' } },
      });
      const name = unique('strict');
      await credential(name, { namespaces: { names: [ns] }, serviceAccounts: { names: ['strict'] } });
      await caughtUp();
      // In the race window (regcred has not patched the ServiceAccount yet), the Pod is refused
      // rather than admitted without the credential: its controller retries.
      const refused = await rejection(dryRunPod(client, ns, { serviceAccountName: 'strict' }));
      expect(refused.code).to.equal(403);
      expect(refused.message).to.contain(`does not reference that imagePullSecret`);
      // As regcred patches it:
      await client.mergePatch(`/api/v1/namespaces/${ns}/serviceaccounts/strict`, {
        imagePullSecrets: [{ name }],
      });
      await eventually('the Pod is admitted with the entry', async () => {
        const names = await dryRunPullSecrets(client, ns, { serviceAccountName: 'strict' }).catch(() => []);
        return names.length === 1 && names[0] === name;
      });
    });

    it('with the operator running, a Pod in a converged namespace gets the entry once', async () => {
      const name = unique('operated');
      const op = await startOperator({ name });
      try {
        const world = await tenantWorld(name);
        const [ns] = world.namespaces;
        namespaces.push(ns!);
        expect((await getServiceAccount(ns!)).imagePullSecrets).to.deep.equal([{ name }]);
        await awaitInjection(client, ns!, name);
        expect(await dryRunPullSecrets(client, ns!)).to.deep.equal([name]);
        await deleteCredential(name);
        await waitForGone(`${RC_PATH}/${name}`);
      } finally {
        await op.stop();
      }
    });
  });

  describe("the policy's selection is the operator's", () => {
    // Generated worlds: a pool of namespaces with random names and labels, and 1-3
    // RegistryCredentials with random names, selectors, excludes, sources, secretNames,
    // serviceAccounts, suspend and deletion. For each namespace of the pool (and `default` and the
    // source namespace), a dry-run Pod (random ServiceAccount, random own entries) must get exactly
    // the entries `expectedInjection` (the operator's compileSelection) names.
    const POOLS = 4;
    const WORLDS_PER_POOL = 50;
    const POOL_SIZE = 8;
    const LABEL_KEYS = ['tier', 'team', 'env', 'regcred.dev/x', 'a.b/c'];
    const LABEL_VALUES = ['a', 'b', '', 'x-1'];
    /** A key the CRD's schema accepts and the operator refuses (prefix longer than 253 characters). */
    const REFUSED_KEY = `${'a'.repeat(254)}/x`;
    const SERVICE_ACCOUNTS = ['default', 'builder'];

    interface Pool {
      names: string[];
    }
    const nsName = fc
      .tuple(fc.constantFrom('', 'kube-', 'team-', 'a-'), fc.stringMatching(/^[ab01]([-ab01]{0,4}[ab01])?$/))
      .map(([prefix, rest]) => prefix + rest);
    const poolArb = fc.uniqueArray(
      fc.record({
        name: nsName,
        labels: fc.dictionary(fc.constantFrom(...LABEL_KEYS), fc.constantFrom(...LABEL_VALUES), {
          maxKeys: 3,
        }),
      }),
      { minLength: POOL_SIZE, maxLength: POOL_SIZE, selector: (n) => n.name },
    );

    function worldArb(pool: string[], checked: number) {
      const poolName = fc.constantFrom(...pool);
      const glob = fc.oneof(
        poolName.chain((n) => fc.nat({ max: n.length }).map((i) => `${n.slice(0, i)}*`)),
        poolName.chain((n) => fc.nat({ max: n.length - 1 }).map((i) => `${n.slice(0, i)}?${n.slice(i + 1)}`)),
        poolName.chain((n) => fc.nat({ max: n.length - 1 }).map((i) => `*${n.slice(i)}`)),
        poolName,
        fc.stringMatching(/^[-ab01*?]{1,6}$/),
      );
      const key = fc.oneof(
        { weight: 20, arbitrary: fc.constantFrom(...LABEL_KEYS, 'kubernetes.io/metadata.name', 'absent') },
        { weight: 1, arbitrary: fc.constant(REFUSED_KEY) },
      );
      const value = fc.constantFrom(...LABEL_VALUES, ...pool);
      const expression = fc.oneof(
        fc.record({
          key,
          operator: fc.constantFrom('In', 'NotIn'),
          values: fc.uniqueArray(value, { minLength: 1, maxLength: 3 }),
        }),
        fc.record({ key, operator: fc.constantFrom('Exists', 'DoesNotExist') }),
      );
      const selector = fc.record(
        {
          matchLabels: fc.dictionary(key, value, { maxKeys: 2 }),
          matchExpressions: fc.array(expression, { maxLength: 3 }),
        },
        { requiredKeys: [] },
      );
      const rare = (arb: fc.Arbitrary<boolean>) =>
        fc.oneof({ weight: 6, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: arb });
      const credentialArb = fc
        .record({
          names: fc.uniqueArray(fc.oneof(poolName, fc.constantFrom('default', SOURCE_NAMESPACE), nsName), {
            maxLength: 3,
          }),
          selector: fc.option(selector, { nil: undefined }),
          exclude: fc.option(fc.uniqueArray(glob, { minLength: 1, maxLength: 2 }), { nil: undefined }),
          sourceNamespace: fc.constantFrom(...pool, SOURCE_NAMESPACE),
          secretName: fc.option(fc.constantFrom('shared-a', 'shared-b', 'own-1'), { nil: undefined }),
          serviceAccounts: fc.option(
            fc.constantFrom<Record<string, unknown>>(
              { names: ['default'] },
              { names: ['*'] },
              { names: ['builder'] },
              { names: ['default', 'builder'] },
              { names: [] },
              {},
              { selector: {} },
              { names: ['builder'], selector: { matchLabels: { tier: 'a' } } },
              { names: ['default'], selector: { matchLabels: { [REFUSED_KEY]: 'a' } } },
            ),
            { nil: undefined },
          ),
          suspend: rare(fc.constant(true)),
          deleting: rare(fc.constant(true)),
        })
        .filter((c) => c.names.length > 0 || c.selector !== undefined);
      const podArb = fc.record({
        serviceAccount: fc.constantFrom(...SERVICE_ACCOUNTS),
        own: fc.option(fc.uniqueArray(fc.constantFrom('own-1', 'own-2', 'shared-a'), { maxLength: 2 }), {
          nil: undefined,
        }),
      });
      return fc.record({
        credentials: fc.array(credentialArb, { minLength: 1, maxLength: 3 }),
        pods: fc.array(podArb, { minLength: checked, maxLength: checked }),
      });
    }

    it(`over ${POOLS * WORLDS_PER_POOL} generated worlds, every Pod gets exactly the entries the operator's selection names`, async function () {
      this.timeout(10 * 60_000);
      const prefix = unique('w');
      let worlds = 0;
      let pods = 0;
      let pairs = 0;
      const before = await checks();
      for (let p = 0; p < POOLS; p++) {
        // The pool: namespaces that could be created (a name still terminating from an earlier
        // pool is skipped), each with a second ServiceAccount, `builder`.
        const generated = fc.sample(poolArb, 1)[0]!;
        const pool: Pool = { names: [] };
        await Promise.all(
          generated.map(async (n) => {
            try {
              await createNamespace(n.name, n.labels);
            } catch (err) {
              if (err instanceof ApiError && err.code === 409) return;
              throw err;
            }
            await createServiceAccount(n.name, 'builder');
            pool.names.push(n.name);
          }),
        );
        const checked = [...pool.names, 'default', SOURCE_NAMESPACE];
        const namespaceObjects = await Promise.all(
          checked.map(async (n) => projectNamespace(await client.get(`/api/v1/namespaces/${n}`))),
        );
        // What the ServiceAccount admission plugin copies into a Pod that lists none.
        const fromServiceAccount = await Promise.all(
          checked.map(
            async (n) =>
              Object.fromEntries(
                await Promise.all(
                  SERVICE_ACCOUNTS.filter((sa) => pool.names.includes(n) || sa === 'default').map(
                    async (sa) => [
                      sa,
                      ((await getServiceAccount(n, sa)).imagePullSecrets ?? []).map((e) => e.name),
                    ],
                  ),
                ),
              ) as Record<string, string[]>,
          ),
        );
        await fc.assert(
          fc.asyncProperty(worldArb(pool.names, checked.length), async (world) => {
            const id = `${prefix}-${worlds++}`;
            const made = world.credentials.map((c, i) => ({ ...c, name: `${id}-${i}` }));
            await Promise.all(
              made.map((c) =>
                client.create(RC_PATH, {
                  apiVersion: 'regcred.dev/v1alpha1',
                  kind: 'RegistryCredential',
                  metadata: { name: c.name, finalizers: c.deleting ? [HOLD] : undefined },
                  spec: {
                    source: { secretRef: { namespace: c.sourceNamespace, name: 'pull' } },
                    secretName: c.secretName,
                    namespaces: {
                      ...(c.names.length ? { names: c.names } : {}),
                      ...(c.selector ? { selector: c.selector } : {}),
                      ...(c.exclude ? { exclude: c.exclude } : {}),
                    },
                    serviceAccounts: c.serviceAccounts,
                    suspend: c.suspend,
                  },
                }),
              ),
            );
            await Promise.all(
              made.filter((c) => c.deleting).map((c) => client.delete(`${RC_PATH}/${c.name}`)),
            );
            try {
              await caughtUp();
              // Every RegistryCredential the policy sees, this world's and any other.
              const all = (await client.get<{ items: RegistryCredential[] }>(RC_PATH)).items;
              await Promise.all(
                checked.map(async (ns, i) => {
                  const pod = world.pods[i]!;
                  const serviceAccount = pool.names.includes(ns) ? pod.serviceAccount : 'default';
                  const own = pod.own?.length ? pod.own : fromServiceAccount[i]![serviceAccount]!;
                  const got = await dryRunPullSecrets(client, ns, {
                    serviceAccountName: serviceAccount,
                    imagePullSecrets: pod.own,
                  });
                  const expected = expectedInjection(all, namespaceObjects[i]!, serviceAccount).filter(
                    (n) => !own.includes(n),
                  );
                  const detail = () =>
                    JSON.stringify({
                      namespace: namespaceObjects[i]!.metadata,
                      serviceAccount,
                      own: pod.own,
                      got,
                      expected,
                      credentials: all.map((rc) => ({
                        name: rc.metadata.name,
                        deleting: Boolean(rc.metadata.deletionTimestamp),
                        spec: rc.spec,
                      })),
                    });
                  expect(
                    got.slice(0, own.length),
                    `the Pod's own (or its ServiceAccount's) first: ${detail()}`,
                  ).to.deep.equal(own);
                  expect([...got.slice(own.length)].sort(), `regcred's entries: ${detail()}`).to.deep.equal(
                    expected,
                  );
                  pods++;
                  pairs += all.length;
                }),
              );
            } finally {
              await Promise.all(
                made.map((c) => (c.deleting ? forceDelete(c.name) : client.delete(`${RC_PATH}/${c.name}`))),
              );
            }
          }),
          { numRuns: WORLDS_PER_POOL, endOnFailure: true },
        );
        // Nothing but the policy added entries: no operator patched a ServiceAccount of the pool.
        for (const ns of pool.names) {
          for (const sa of SERVICE_ACCOUNTS)
            expect((await getServiceAccount(ns, sa)).imagePullSecrets ?? [], `${ns}/${sa}`).to.deep.equal([]);
          await client.delete(`/api/v1/namespaces/${ns}`);
        }
      }
      const after = await checks();
      expect(worlds).to.be.at.least(200);
      expect(errorsBetween(before, after), 'evaluations that failed').to.equal(0);
      expect((after.no_error ?? 0) - (before.no_error ?? 0)).to.be.at.least(pods);
      this.test!.title += ` (${worlds} worlds, ${pods} Pods, ${pairs} Pod × credential pairs)`;
    });
  });
});
