/**
 * What Flux and Argo CD make of a RegistryCredential through its life, computed by their own code
 * on the live object as the API server returns it: kstatus `Compute` (sigs.k8s.io/cli-utils, what
 * Flux's `wait` and `healthChecks` read) and regcred's Argo CD health script
 * (config/argocd/argocd-cm.yaml, the snippet users apply) under gopher-lua with Argo CD's library
 * set. The stages, in order, follow one RegistryCredential over 200 namespaces, and each checks
 * the README's table ("GitOps"):
 *
 *   created → progressing → Ready → source broken → fixed → spec changed → conflicting →
 *   failing writes (Reconciling, then Stalled) → suspended → deleting
 *
 * The stages share the world, so a failed stage fails the ones after it too.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { load } from 'js-yaml';
import type { RegistryCredential } from '../../src/api/v1alpha1.ts';
import { ApiError } from '../../src/runtime/kube.ts';
import {
  type ArgoAnswer,
  argocdHealth,
  gitopsTools,
  type KstatusVerdict,
  kstatus,
} from '../support/gitops.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  b64,
  condition,
  createCredential,
  createServiceAccount,
  createSource,
  deleteCredential,
  denySecrets,
  dockerConfig,
  getCredential,
  ignoreNotFound,
  installRegcred,
  patchCredentialSpec,
  RC_PATH,
  type RunningOperator,
  SOURCE_NAMESPACE,
  startOperator,
  unique,
  updateSource,
  waitForGone,
  waitForReady,
} from '../support/world.ts';

const ARGOCD_DIR = join(import.meta.dirname, '..', '..', 'config', 'argocd');
const HEALTH_KEY = 'resource.customizations.health.regcred.dev_RegistryCredential';
/** Writes that keep failing turn Stalled after this long (the operator's --stall-after). */
const STALL_AFTER_MS = 4000;
const NAMESPACES = 200;

type Kstatus = KstatusVerdict['status'];

/** The README's table: what each Ready reason reads as. */
const TABLE: Record<string, { kstatus: Kstatus; argocd: string }> = {
  Synced: { kstatus: 'Current', argocd: 'Healthy' },
  Progressing: { kstatus: 'InProgress', argocd: 'Progressing' },
  SourceInvalid: { kstatus: 'Failed', argocd: 'Degraded' },
  SourceNotAllowed: { kstatus: 'Failed', argocd: 'Degraded' },
  InvalidSpec: { kstatus: 'Failed', argocd: 'Degraded' },
  Conflicts: { kstatus: 'Failed', argocd: 'Degraded' },
  Suspended: { kstatus: 'Current', argocd: 'Suspended' },
};

interface Judged {
  rc: RegistryCredential;
  kstatus: KstatusVerdict;
  argocd: ArgoAnswer;
}

describe("GitOps health: kstatus and the Argo CD script through a RegistryCredential's life", function () {
  // The first run builds the tools (the README's "GitOps" has the times); the stages take about a minute.
  this.timeout(900_000);
  const t = unique('gitops');
  const tenants = Array.from({ length: NAMESPACES }, (_, i) => `${t}-${i}`);
  const taken = `${t}-taken`;
  const denied = `${t}-denied`;
  const lockedTenant = tenants[0]!;
  let script: string;
  let op: RunningOperator | undefined;
  const removals: (() => Promise<void>)[] = [];

  /** Both tools' verdicts on each object, in order. */
  async function judge(objects: RegistryCredential[]): Promise<Judged[]> {
    const [k, a] = await Promise.all([kstatus(objects), argocdHealth(script, objects)]);
    return objects.map((rc, i) => ({ rc, kstatus: k[i]!, argocd: a[i]! }));
  }

  /** Asserts what Flux (kstatus) and Argo CD (Argo CD's display and the script's own answer) read. */
  async function expectRead(rc: RegistryCredential, want: Kstatus, argo: string, argoShown = argo) {
    const [j] = await judge([rc]);
    const ready = condition(rc, 'Ready');
    const where = `Ready=${ready?.status}/${ready?.reason}, generation ${rc.metadata.generation}, observed ${rc.status?.observedGeneration}`;
    expect(j!.kstatus.status, `kstatus (${where}): ${j!.kstatus.message}`).to.equal(want);
    expect(j!.argocd.error, 'the Argo CD script runs').to.equal(undefined);
    expect(j!.argocd.script?.status, `the Argo CD script (${where}): ${j!.argocd.script?.message}`).to.equal(
      argo,
    );
    expect(j!.argocd.health.status, `Argo CD shows (${where})`).to.equal(argoShown);
    return j!;
  }

  /** Waits until status is current (observedGeneration = generation) and Ready has this reason. */
  async function reach(reason: string, status?: 'True' | 'False'): Promise<RegistryCredential> {
    return eventually(
      `${t} reports Ready reason ${reason}`,
      async () => {
        const rc = await getCredential(t);
        const ready = condition(rc, 'Ready');
        const current = rc.status?.observedGeneration === rc.metadata.generation;
        return current && ready?.reason === reason && (!status || ready.status === status) ? rc : undefined;
      },
      { timeoutMs: 60_000 },
    );
  }

  before(async () => {
    await installRegcred();
    await gitopsTools();
    // The script users apply: the argocd-cm snippet's, which must be health.lua's exactly.
    const cm = load(readFileSync(join(ARGOCD_DIR, 'argocd-cm.yaml'), 'utf8')) as {
      metadata: { name: string; namespace: string };
      data: Record<string, string>;
    };
    expect(cm.metadata).to.deep.include({ name: 'argocd-cm', namespace: 'argocd' });
    expect(Object.keys(cm.data)).to.deep.equal([HEALTH_KEY]);
    expect(cm.data[HEALTH_KEY]).to.equal(readFileSync(join(ARGOCD_DIR, 'health.lua'), 'utf8'));
    script = join(mkdtempSync(join(tmpdir(), 'regcred-argocd-')), 'health.lua');
    writeFileSync(script, cm.data[HEALTH_KEY]!);

    await createSource(t);
    // 200 tenants, each with default and two more ServiceAccounts: 800 writes to fan out.
    const client = admin();
    for (let i = 0; i < tenants.length; i += 25) {
      await Promise.all(
        tenants.slice(i, i + 25).map(async (ns) => {
          await client.create('/api/v1/namespaces', { metadata: { name: ns, labels: { tenant: t } } });
          await createServiceAccount(ns, 'builder');
          await createServiceAccount(ns, 'runner');
        }),
      );
    }
    await eventually(
      'every tenant has its default ServiceAccount',
      async () => {
        const sas = await client.get<{ items: { metadata: { namespace: string } }[] }>(
          '/api/v1/serviceaccounts',
          { fieldSelector: 'metadata.name=default' },
        );
        const have = new Set(sas.items.map((s) => s.metadata.namespace));
        return tenants.every((ns) => have.has(ns));
      },
      { timeoutMs: 60_000 },
    );
  });

  after(async () => {
    await op?.stop();
    for (const remove of removals.reverse()) await remove().catch(() => {});
    await deleteCredential(t);
    const client = admin();
    for (const ns of [...tenants, taken, denied])
      await client.delete(`/api/v1/namespaces/${ns}`).catch(ignoreNotFound);
    await client.delete(`/api/v1/namespaces/${SOURCE_NAMESPACE}/secrets/${t}`).catch(ignoreNotFound);
  });

  it("the harness runs Argo CD's restricted libraries: a script using string functions fails", async () => {
    const strict = join(mkdtempSync(join(tmpdir(), 'regcred-argocd-')), 'strict.lua');
    writeFileSync(strict, 'return { status = string.upper("healthy") }\n');
    const [a] = await argocdHealth(strict, [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } },
    ]);
    expect(a!.error).to.match(/attempt to index a non-table object\(nil\) with key 'upper'/);
    expect(a!.health.status).to.equal('Unknown');
  });

  it('created, before the operator saw it: InProgress / Progressing (observedGeneration -1 by the schema)', async () => {
    await createCredential(t, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: t } },
      namespaces: { selector: { matchLabels: { tenant: t } } },
      serviceAccounts: { names: ['*'] },
    });
    const rc = await getCredential(t);
    expect(rc.status).to.deep.equal({ observedGeneration: -1 });
    const j = await expectRead(rc, 'InProgress', 'Progressing');
    expect(j.kstatus.message).to.include('latest observed generation is -1');
  });

  it('progressing over 200 namespaces: InProgress / Progressing, then Ready: Current / Healthy', async () => {
    op = await startOperator({ stallAfterMs: STALL_AFTER_MS, name: `${t}-operator` });
    // Every version of the object seen while the fan-out runs, as a GitOps tool polling it would.
    const seen = new Map<string, RegistryCredential>();
    const ready = await eventually(
      `${t} is Ready over ${NAMESPACES} namespaces`,
      async () => {
        const rc = await getCredential(t);
        seen.set(rc.metadata.resourceVersion, rc);
        const r = condition(rc, 'Ready');
        return r?.reason === 'Synced' && rc.status?.synced === `${NAMESPACES}/${NAMESPACES}` ? rc : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 50 },
    );
    const judged = await judge([...seen.values()]);
    const reasons = new Set<string>();
    for (const j of judged) {
      const r = condition(j.rc, 'Ready');
      if (!r) {
        expect(j.kstatus.status, 'no status yet').to.equal('InProgress');
        expect(j.argocd.health.status).to.equal('Progressing');
        continue;
      }
      reasons.add(r.reason);
      const want = TABLE[r.reason]!;
      expect(j.kstatus.status, `kstatus at ${r.reason} (${r.message})`).to.equal(want.kstatus);
      expect(j.argocd.health.status, `Argo CD at ${r.reason}`).to.equal(want.argocd);
      if (r.reason === 'Progressing') {
        expect(condition(j.rc, 'Reconciling')).to.include({ status: 'True', reason: 'Progressing' });
        expect(condition(j.rc, 'Stalled')).to.equal(undefined);
      }
    }
    expect([...reasons].sort(), 'statuses written during the fan-out').to.deep.equal([
      'Progressing',
      'Synced',
    ]);
    await expectRead(ready, 'Current', 'Healthy');
    expect(ready.status?.conditions?.map((c) => c.type)).to.deep.equal(['Ready', 'SourceValid']);
  });

  it('source broken: Failed (Stalled) / Degraded; fixed: Current / Healthy', async () => {
    await updateSource(t, {
      '.dockerconfigjson': b64(
        JSON.stringify({ auths: { 'registry.example.com': { auth: 'not base64!' } } }),
      ),
    });
    const broken = await reach('SourceInvalid', 'False');
    expect(condition(broken, 'Stalled')).to.include({ status: 'True', reason: 'SourceInvalid' });
    expect(condition(broken, 'Reconciling')).to.equal(undefined);
    const j = await expectRead(broken, 'Failed', 'Degraded');
    expect(j.argocd.health.message).to.include('SourceInvalid');

    const fixed = await updateSource(t, {
      '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', 'pw-fixed')),
    });
    const ready = await eventually(
      `${t} is Ready with the fixed source`,
      async () => {
        const rc = await getCredential(t);
        return condition(rc, 'Ready')?.reason === 'Synced' &&
          rc.status?.sourceResourceVersion === fixed.metadata.resourceVersion
          ? rc
          : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(condition(ready, 'Stalled')).to.equal(undefined);
    await expectRead(ready, 'Current', 'Healthy');
  });

  it('spec changed: the status older than the spec reads InProgress / Progressing until regcred catches up', async () => {
    // What the API server answers the change with is the object with its new generation and the
    // status of the old one, as a GitOps tool right after applying it sees it.
    const changed = await patchCredentialSpec(t, { namespaces: { exclude: [`${t}-never-*`] } });
    expect(changed.metadata.generation).to.equal(2);
    expect(changed.status?.observedGeneration).to.equal(1);
    expect(condition(changed, 'Ready')?.reason).to.equal('Synced');
    await expectRead(changed, 'InProgress', 'Progressing');
    const caughtUp = await waitForReady(t, 'True', 'Synced', 60_000);
    expect(caughtUp.status?.observedGeneration).to.equal(2);
    expect(caughtUp.status?.conditions?.every((c) => c.observedGeneration === 2)).to.equal(true);
    await expectRead(caughtUp, 'Current', 'Healthy');
  });

  it('conflicting: Failed (Stalled) / Degraded; the conflict gone: Current / Healthy', async () => {
    const client = admin();
    await client.create('/api/v1/namespaces', { metadata: { name: taken } });
    await client.create(`/api/v1/namespaces/${taken}/secrets`, {
      metadata: { name: t },
      type: 'Opaque',
      stringData: { owner: 'someone else' },
    });
    await client.mergePatch(`/api/v1/namespaces/${taken}`, { metadata: { labels: { tenant: t } } });
    const conflicting = await reach('Conflicts', 'False');
    expect(condition(conflicting, 'Stalled')).to.include({ status: 'True', reason: 'Conflicts' });
    await expectRead(conflicting, 'Failed', 'Degraded');

    await client.mergePatch(`/api/v1/namespaces/${taken}`, { metadata: { labels: { tenant: null } } });
    await expectRead(await reach('Synced', 'True'), 'Current', 'Healthy');
  });

  it(`failing writes: InProgress / Progressing while retried, Failed (Stalled) / Degraded after ${STALL_AFTER_MS / 1000} s of failures`, async () => {
    const client = admin();
    const deny = { [`${t}-frozen`]: 'true' };
    removals.push(await denySecrets(`${t}-frozen`, 'CREATE', deny, 'secrets are frozen here'));
    await client.create('/api/v1/namespaces', { metadata: { name: denied, labels: deny } });
    await eventually('the policy is in force', async () => {
      try {
        await client.create(`/api/v1/namespaces/${denied}/secrets`, { metadata: { generateName: 'probe-' } });
        return false;
      } catch (err) {
        return err instanceof ApiError && err.message.includes('secrets are frozen here');
      }
    });
    await client.mergePatch(`/api/v1/namespaces/${denied}`, { metadata: { labels: { tenant: t } } });

    const retrying = await reach('Failed', 'False');
    expect(condition(retrying, 'Reconciling')).to.include({ status: 'True', reason: 'Failed' });
    expect(condition(retrying, 'Stalled')).to.equal(undefined);
    expect(retrying.status?.failures?.[0]).to.deep.include({ namespace: denied });
    const since = retrying.status?.failingSince;
    expect(Date.parse(since ?? '')).not.to.be.NaN;
    await expectRead(retrying, 'InProgress', 'Progressing');

    const stalled = await eventually(
      `${t} is Stalled after ${STALL_AFTER_MS} ms of failing writes`,
      async () => {
        const rc = await getCredential(t);
        return condition(rc, 'Stalled') ? rc : undefined;
      },
      { timeoutMs: STALL_AFTER_MS + 30_000 },
    );
    expect(condition(stalled, 'Ready')).to.include({ status: 'False', reason: 'Failed' });
    expect(condition(stalled, 'Stalled')).to.include({ status: 'True', reason: 'Failed' });
    expect(condition(stalled, 'Reconciling')).to.equal(undefined);
    expect(stalled.status?.failingSince).to.equal(since);
    expect(Date.parse(condition(stalled, 'Stalled')!.lastTransitionTime) - Date.parse(since!)).to.be.at.least(
      STALL_AFTER_MS - 1000,
    );
    await expectRead(stalled, 'Failed', 'Degraded');

    // The namespace no longer selected, nothing fails: Ready again, failingSince gone.
    await client.mergePatch(`/api/v1/namespaces/${denied}`, { metadata: { labels: { tenant: null } } });
    const ready = await reach('Synced', 'True');
    expect(ready.status?.failingSince).to.equal(undefined);
    await expectRead(ready, 'Current', 'Healthy');
  });

  it('suspended: Current / Suspended', async () => {
    await patchCredentialSpec(t, { suspend: true });
    const suspended = await reach('Suspended', 'True');
    await expectRead(suspended, 'Current', 'Suspended');
  });

  it('deleting: Terminating / Progressing, with Ready reason Deleting while the finalizer cleans up', async () => {
    // A policy refusing the copy's deletion in one tenant holds the cleanup, so the stage lasts.
    const lock = { [`${t}-locked`]: 'true' };
    const unlock = await denySecrets(`${t}-locked`, 'DELETE', lock, 'secrets are locked here');
    removals.push(unlock);
    const client = admin();
    await client.mergePatch(`/api/v1/namespaces/${lockedTenant}`, { metadata: { labels: lock } });
    await eventually('the policy is in force', async () => {
      const probe = await client.create<{ metadata: { name: string } }>(
        `/api/v1/namespaces/${lockedTenant}/secrets`,
        { metadata: { generateName: 'probe-' } },
      );
      try {
        await client.delete(`/api/v1/namespaces/${lockedTenant}/secrets/${probe.metadata.name}`);
        return false; // deleted: not in force yet
      } catch (err) {
        return err instanceof ApiError && err.message.includes('secrets are locked here');
      }
    });

    await deleteCredential(t);
    const deleting = await reach('Deleting', 'False');
    expect(deleting.metadata.deletionTimestamp).to.be.a('string');
    expect(condition(deleting, 'Reconciling')).to.include({ status: 'True', reason: 'Deleting' });
    expect(condition(deleting, 'Stalled')).to.equal(undefined);
    const j = await expectRead(deleting, 'Terminating', 'Progressing');
    expect(j.argocd.health.message).to.equal('Pending deletion');

    await unlock();
    removals.splice(removals.indexOf(unlock), 1);
    await waitForGone(`${RC_PATH}/${t}`, 120_000);
  });
});
