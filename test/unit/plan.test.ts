/**
 * Desired-state computation: the pure functions that decide every write regcred makes.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { customResourceDefinition } from '../../src/api/crd.ts';
import type { RegistryCredential } from '../../src/api/v1alpha1.ts';
import type { Namespace, Secret, ServiceAccount } from '../../src/regcred/objects.ts';
import { PULL_SECRETS_ANNOTATION } from '../../src/regcred/objects.ts';
import {
  addedEntries,
  compileSelection,
  copyPatch,
  newCopy,
  olderFirst,
  ownershipOf,
  serviceAccountPatch,
} from '../../src/regcred/plan.ts';
import { mergePatch } from '../../src/runtime/mergepatch.ts';

function credential(
  name = 'acme',
  spec: Partial<RegistryCredential['spec']> = {},
  uid = `uid-${name}`,
): RegistryCredential {
  return {
    apiVersion: 'regcred.dev/v1alpha1',
    kind: 'RegistryCredential',
    metadata: { name, uid, resourceVersion: '1', generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: {
      source: { secretRef: { namespace: 'regcred-system', name: 'src' } },
      namespaces: { names: ['a'] },
      ...spec,
    },
  };
}

function serviceAccount(entries: string[], added?: Record<string, string>): ServiceAccount {
  return {
    metadata: {
      name: 'default',
      namespace: 'a',
      uid: 'sa',
      resourceVersion: '7',
      annotations: added ? { [PULL_SECRETS_ANNOTATION]: JSON.stringify(added) } : undefined,
    },
    imagePullSecrets: entries.map((name) => ({ name })),
  };
}

/** Applies a merge patch the way the API server does, for the fields these patches touch. */
function applyToServiceAccount(
  sa: ServiceAccount,
  patch: ReturnType<typeof serviceAccountPatch>,
): ServiceAccount {
  if (!patch) return sa;
  const annotations = { ...sa.metadata.annotations };
  const value = patch.metadata.annotations[PULL_SECRETS_ANNOTATION];
  if (value === null) delete annotations[PULL_SECRETS_ANNOTATION];
  else annotations[PULL_SECRETS_ANNOTATION] = value;
  return {
    metadata: {
      ...sa.metadata,
      annotations,
      resourceVersion: String(Number(sa.metadata.resourceVersion) + 1),
    },
    imagePullSecrets: patch.imagePullSecrets,
  };
}

const names = (sa: ServiceAccount) => (sa.imagePullSecrets ?? []).map((e) => e.name);
const entryName = fc.constantFrom('a', 'b', 'c', 'acme', 'other');

describe('ServiceAccount entries', () => {
  const rc = credential();

  it('appends the entry after existing ones and records it as added', () => {
    const patch = serviceAccountPatch(serviceAccount(['x', 'y']), rc, 'acme', true)!;
    expect(patch.imagePullSecrets).to.deep.equal([{ name: 'x' }, { name: 'y' }, { name: 'acme' }]);
    expect(patch.metadata).to.deep.equal({
      resourceVersion: '7',
      annotations: { [PULL_SECRETS_ANNOTATION]: '{"acme":"acme"}' },
    });
  });

  it('adds nothing, and records nothing, when an entry of that name was already there', () => {
    expect(serviceAccountPatch(serviceAccount(['acme']), rc, 'acme', true)).to.equal(undefined);
  });

  it('removes only its own entry, the last of that name, and drops the annotation when none is left', () => {
    const patch = serviceAccountPatch(
      serviceAccount(['x', 'acme', 'y', 'acme'], { acme: 'acme' }),
      rc,
      'acme',
      false,
    )!;
    expect(patch.imagePullSecrets).to.deep.equal([{ name: 'x' }, { name: 'acme' }, { name: 'y' }]);
    expect(patch.metadata.annotations[PULL_SECRETS_ANNOTATION]).to.equal(null);
  });

  it('restores its entry when someone removed it, as the annotation still records it', () => {
    const patch = serviceAccountPatch(serviceAccount(['x'], { acme: 'acme' }), rc, 'acme', true)!;
    expect(patch.imagePullSecrets).to.deep.equal([{ name: 'x' }, { name: 'acme' }]);
  });

  it('moves its entry to a new secret name in one patch', () => {
    const patch = serviceAccountPatch(serviceAccount(['x', 'old'], { old: 'acme' }), rc, 'new', true)!;
    expect(patch.imagePullSecrets).to.deep.equal([{ name: 'x' }, { name: 'new' }]);
    expect(
      addedEntries(applyToServiceAccount(serviceAccount(['x', 'old'], { old: 'acme' }), patch)),
    ).to.deep.equal({
      new: 'acme',
    });
  });

  it("never touches another credential's entries", () => {
    expect(serviceAccountPatch(serviceAccount(['other'], { other: 'other-rc' }), rc, 'acme', false)).to.equal(
      undefined,
    );
  });

  it('treats an annotation it cannot read as recording nothing', () => {
    const sa = serviceAccount(['acme']);
    sa.metadata.annotations = { [PULL_SECRETS_ANNOTATION]: 'not json' };
    expect(addedEntries(sa)).to.deep.equal({});
    expect(serviceAccountPatch(sa, rc, 'acme', false)).to.equal(undefined);
  });

  it('converges in one patch and is then idempotent, for any starting list', () => {
    fc.assert(
      fc.property(
        fc.array(entryName, { maxLength: 6 }),
        fc.boolean(),
        entryName,
        (start, want, secretName) => {
          const once = applyToServiceAccount(
            serviceAccount(start),
            serviceAccountPatch(serviceAccount(start), rc, secretName, want),
          );
          return serviceAccountPatch(once, rc, secretName, want) === undefined;
        },
      ),
    );
  });

  it('adding then removing gives back exactly the list others wrote, in order', () => {
    fc.assert(
      fc.property(fc.array(entryName, { maxLength: 6 }), entryName, (start, secretName) => {
        const sa = serviceAccount(start);
        const added = applyToServiceAccount(sa, serviceAccountPatch(sa, rc, secretName, true));
        const removed = applyToServiceAccount(added, serviceAccountPatch(added, rc, secretName, false));
        return (
          JSON.stringify(names(removed)) === JSON.stringify(start) &&
          addedEntries(removed)[secretName] === undefined
        );
      }),
    );
  });

  it('keeps every entry it did not add, in their order, whatever it wants', () => {
    fc.assert(
      fc.property(
        fc.array(entryName, { maxLength: 6 }),
        entryName,
        fc.boolean(),
        (start, secretName, want) => {
          const sa = serviceAccount(start);
          const after = names(applyToServiceAccount(sa, serviceAccountPatch(sa, rc, secretName, want)));
          const withoutOurs = want && !start.includes(secretName) ? after.slice(0, -1) : after;
          return JSON.stringify(withoutOurs) === JSON.stringify(start);
        },
      ),
    );
  });
});

describe('copies', () => {
  const rc = credential('acme', { secretName: 'pull' });
  const fresh = newCopy(rc, 'a', 'REFUQQ==');
  const asCached = (
    over: Partial<Secret['metadata']> = {},
    data: Record<string, string> = fresh.data,
  ): Secret => ({
    metadata: { ...fresh.metadata, uid: 'copy', resourceVersion: '3', ...over },
    type: fresh.type,
    data: { ...data },
  });

  it('builds a new copy from scratch with regcred metadata only and an owner reference', () => {
    expect(fresh.metadata.labels).to.deep.equal({
      'app.kubernetes.io/managed-by': 'regcred',
      'regcred.dev/credential': 'acme',
    });
    expect(fresh.metadata.annotations).to.deep.equal({
      'regcred.dev/credential': 'acme',
      'regcred.dev/source': 'regcred-system/src',
    });
    expect(fresh.metadata.ownerReferences).to.deep.equal([
      {
        apiVersion: 'regcred.dev/v1alpha1',
        kind: 'RegistryCredential',
        name: 'acme',
        uid: 'uid-acme',
        controller: true,
      },
    ]);
    expect(fresh.metadata.name).to.equal('pull');
  });

  it('needs no write when the copy is right, even with labels others added', () => {
    expect(copyPatch(asCached({ labels: { ...fresh.metadata.labels, team: 'x' } }), rc, 'REFUQQ==')).to.equal(
      undefined,
    );
  });

  it('restores data and removes data keys others added, with a resourceVersion precondition', () => {
    const patch = copyPatch(asCached({}, { '.dockerconfigjson': 'b2xk', extra: 'eA==' }), rc, 'REFUQQ==');
    expect(patch).to.deep.equal({
      metadata: { resourceVersion: '3' },
      data: { '.dockerconfigjson': 'REFUQQ==', extra: null },
    });
  });

  it('records the source version with the data it writes, and never writes for the version alone', () => {
    const version = 'regcred.dev/source-resource-version';
    expect(newCopy(rc, 'a', 'REFUQQ==', '41').metadata.annotations).to.include({ [version]: '41' });
    const stale = asCached(
      { annotations: { ...fresh.metadata.annotations, [version]: '40' } },
      { '.dockerconfigjson': 'b2xk' },
    );
    expect(copyPatch(stale, rc, 'REFUQQ==', '41')).to.deep.equal({
      metadata: { annotations: { [version]: '41' }, resourceVersion: '3' },
      data: { '.dockerconfigjson': 'REFUQQ==' },
    });
    // Same credential, newer source version (its labels changed): nothing to write.
    const current = asCached({ annotations: { ...fresh.metadata.annotations, [version]: '40' } });
    expect(copyPatch(current, rc, 'REFUQQ==', '41')).to.equal(undefined);
  });

  it('leaves the data alone when there is no usable source, but still restores its labels', () => {
    const patch = copyPatch(asCached({ labels: {} }, { '.dockerconfigjson': 'b2xk' }), rc, undefined);
    expect(patch).to.deep.equal({
      metadata: {
        labels: { 'app.kubernetes.io/managed-by': 'regcred', 'regcred.dev/credential': 'acme' },
        resourceVersion: '3',
      },
    });
  });

  it('adopts by adding its owner reference after the existing ones', () => {
    const foreign = asCached({
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'x', uid: 'cm' }],
    });
    const patch = copyPatch(foreign, rc, 'REFUQQ==') as { metadata: { ownerReferences: { uid: string }[] } };
    expect(patch.metadata.ownerReferences.map((r) => r.uid)).to.deep.equal(['cm', 'uid-acme']);
    const notOurs = asCached({ ownerReferences: [] });
    const adopt = copyPatch(notOurs, rc, 'REFUQQ==') as { metadata: { ownerReferences: { uid: string }[] } };
    expect(adopt.metadata.ownerReferences.map((r) => r.uid)).to.deep.equal(['uid-acme']);
  });

  it('knows ownership only by the owner UID, never by labels', () => {
    expect(ownershipOf(asCached(), rc)).to.deep.equal({ kind: 'ours' });
    expect(ownershipOf(asCached(), credential('acme', {}, 'recreated-uid'))).to.deep.equal({
      kind: 'otherCredential',
      name: 'acme',
    });
    expect(ownershipOf(asCached({ ownerReferences: undefined }), rc)).to.deep.equal({ kind: 'foreign' });
  });
});

describe('selection', () => {
  const ns = (name: string, labels: Record<string, string> = {}, deletionTimestamp?: string): Namespace => ({
    metadata: { name, uid: name, resourceVersion: '1', labels, deletionTimestamp },
  });

  it('selects names and selector matches, minus excludes, never the source namespace or a terminating one', () => {
    const compiled = compileSelection(
      credential('acme', {
        namespaces: {
          names: ['named', 'regcred-system'],
          selector: { matchLabels: { tenant: 'acme' } },
          exclude: ['kube-*'],
        },
      }),
    );
    if (!compiled.ok) throw new Error(compiled.message);
    const s = compiled.selection;
    expect(s.namespace(ns('named'))).to.equal('selected');
    expect(s.namespace(ns('t1', { tenant: 'acme' }))).to.equal('selected');
    expect(s.namespace(ns('kube-x', { tenant: 'acme' }))).to.equal('notSelected');
    expect(s.namespace(ns('regcred-system', { tenant: 'acme' }))).to.equal('notSelected');
    expect(s.namespace(ns('t2'))).to.equal('notSelected');
    expect(s.namespace(ns('t1', { tenant: 'acme' }, '2026-01-01T00:00:00Z'))).to.equal('terminating');
  });

  it('selects only the default ServiceAccount when serviceAccounts is omitted', () => {
    const compiled = compileSelection(credential('acme', { serviceAccounts: undefined }));
    if (!compiled.ok) throw new Error(compiled.message);
    const sa = (name: string): ServiceAccount => ({
      metadata: { name, namespace: 'a', uid: name, resourceVersion: '1' },
    });
    expect(compiled.selection.serviceAccount(sa('default'))).to.equal(true);
    expect(compiled.selection.serviceAccount(sa('builder'))).to.equal(false);
  });

  it('reports a selector the schema could not judge', () => {
    const key = `${'a'.repeat(254)}/x`;
    const compiled = compileSelection(
      credential('acme', { namespaces: { selector: { matchLabels: { [key]: 'v' } } } }),
    );
    expect(compiled.ok).to.equal(false);
    expect(!compiled.ok && compiled.message).to.match(/^spec\.namespaces\.selector: /);
  });

  it('orders claimants oldest first, then by name', () => {
    const a = credential('b-rc');
    const b = credential('a-rc');
    const later = credential('c-rc');
    later.metadata.creationTimestamp = '2026-01-02T00:00:00Z';
    expect([later, a, b].sort(olderFirst).map((r) => r.metadata.name)).to.deep.equal([
      'a-rc',
      'b-rc',
      'c-rc',
    ]);
  });
});

describe('merge patches', () => {
  it('is empty for equal documents and minimal otherwise, nulling removed keys', () => {
    expect(mergePatch({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 })).to.equal(undefined);
    expect(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { a: 1, b: { c: 2 }, e: [1] })).to.deep.equal({
      b: { d: null },
      e: [1],
    });
  });
});

describe('the CRD schema', () => {
  it('describes every field, so that kubectl explain teaches the whole API', () => {
    const missing: string[] = [];
    const walk = (node: Record<string, unknown>, path: string) => {
      if (path !== '' && path !== '.metadata' && !node.description) missing.push(path || '.');
      const props = node.properties as Record<string, Record<string, unknown>> | undefined;
      for (const [k, v] of Object.entries(props ?? {})) walk(v, `${path}.${k}`);
      if (node.items) walk(node.items as Record<string, unknown>, `${path}[]`);
      if (typeof node.additionalProperties === 'object')
        walk(node.additionalProperties as Record<string, unknown>, `${path}{}`);
    };
    walk(customResourceDefinition().spec.versions[0]!.schema.openAPIV3Schema, '');
    expect(missing.filter((p) => !p.endsWith('[]') && !p.endsWith('{}'))).to.deep.equal([]);
  });
});
