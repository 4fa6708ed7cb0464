/**
 * The namespace plan: every decision regcred makes for one (RegistryCredential, namespace) pair,
 * from a cached world, with no I/O. Examples for each branch, then properties over generated
 * worlds: foreign entries survive, a plan applied leaves nothing to do, ownership is never
 * assumed, and the same world always gives the same plan.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import type { RegistryCredential } from '../../src/api/v1alpha1.ts';
import {
  type NamespacePlan,
  type NamespaceWorld,
  planNamespace,
  settle,
} from '../../src/regcred/namespace-plan.ts';
import {
  FINALIZER,
  type Namespace,
  PULL_SECRETS_ANNOTATION,
  type Secret,
  type ServiceAccount,
  SOURCE_VERSION_ANNOTATION,
} from '../../src/regcred/objects.ts';
import { compileSelection, newCopy } from '../../src/regcred/plan.ts';
import type { SourceState } from '../../src/regcred/sources.ts';

const DATA = 'REFUQQ==';
const VALID: SourceState = {
  valid: true,
  resourceVersion: '50',
  contentVersion: '40',
  message: 'ok',
  dataBase64: DATA,
};
const MISSING: SourceState = { valid: false, reason: 'SourceNotFound', message: 'gone' };

function credential(
  name = 'acme',
  spec: Partial<RegistryCredential['spec']> = {},
  created = '2026-01-02T00:00:00Z',
) {
  const rc: RegistryCredential = {
    apiVersion: 'regcred.dev/v1alpha1',
    kind: 'RegistryCredential',
    metadata: {
      name,
      uid: `uid-${name}`,
      resourceVersion: '1',
      generation: 1,
      creationTimestamp: created,
      finalizers: [FINALIZER],
    },
    spec: {
      source: { secretRef: { namespace: 'regcred-system', name: 'src' } },
      namespaces: { names: ['a'] },
      ...spec,
    },
  };
  return rc;
}

const namespace = (name = 'a', terminating = false): Namespace => ({
  metadata: {
    name,
    uid: `ns-${name}`,
    resourceVersion: '1',
    ...(terminating ? { deletionTimestamp: '2026-01-03T00:00:00Z' } : {}),
  },
});

function serviceAccount(
  name: string,
  entries: string[] = [],
  added?: Record<string, string>,
): ServiceAccount {
  return {
    metadata: {
      name,
      namespace: 'a',
      uid: `sa-${name}`,
      resourceVersion: '7',
      annotations: added ? { [PULL_SECRETS_ANNOTATION]: JSON.stringify(added) } : undefined,
    },
    imagePullSecrets: entries.map((n) => ({ name: n })),
  };
}

/** regcred's copy for `rc` in namespace a, as the cache holds it. */
function copyOf(
  rc: RegistryCredential,
  over: { data?: string; version?: string; name?: string } = {},
): Secret {
  const body = newCopy(rc, 'a', over.data ?? DATA, over.version ?? '40');
  return {
    metadata: { ...body.metadata, name: over.name ?? body.metadata.name, uid: 'copy', resourceVersion: '9' },
    type: body.type,
    data: body.data,
  };
}

const foreign = (type = 'kubernetes.io/dockerconfigjson'): Secret => ({
  metadata: { name: 'acme', namespace: 'a', uid: 'theirs', resourceVersion: '3' },
  type,
  data: { '.dockerconfigjson': 'dGhlaXJz' },
});

function world(over: Partial<NamespaceWorld> = {}): NamespaceWorld {
  const rc = over.rc ?? credential();
  const credentials = [...(over.credentials ?? [rc])];
  return {
    rc,
    name: 'a',
    namespace: namespace(),
    credentials,
    credential: (name) => credentials.find((c) => c.metadata.name === name),
    selectionOf: compileSelection,
    source: VALID,
    copies: [],
    existing: undefined,
    serviceAccounts: [serviceAccount('default')],
    wasSynced: false,
    ...over,
  };
}

function converge(plan: NamespacePlan): Extract<NamespacePlan, { kind: 'converge' }> {
  if (plan.kind !== 'converge') return expect.fail(`expected a converge plan, got ${plan.kind}`);
  return plan;
}

describe('the namespace plan', () => {
  describe('when there is nothing to do', () => {
    it('waits for the finalizer before writing anything', () => {
      const rc = credential();
      rc.metadata.finalizers = [];
      expect(planNamespace(world({ rc }))).to.deep.equal({ kind: 'skip' });
    });

    it('writes nothing for a spec it cannot compile, unless deleting', () => {
      const bad = credential('acme', { namespaces: { selector: { matchLabels: { 'bad key!': 'x' } } } });
      expect(planNamespace(world({ rc: bad }))).to.deep.equal({ kind: 'skip' });
      bad.metadata.deletionTimestamp = '2026-01-03T00:00:00Z';
      const rc = bad;
      const plan = converge(planNamespace(world({ rc, copies: [copyOf(rc)], credentials: [rc] })));
      expect(plan.removals.map((r) => r.copy.metadata.uid)).to.deep.equal(['copy']);
    });

    it('writes nothing while suspended', () => {
      expect(planNamespace(world({ rc: credential('acme', { suspend: true }) }))).to.deep.equal({
        kind: 'skip',
      });
    });

    it('leaves a missing or terminating namespace alone, and forgets it', () => {
      expect(planNamespace(world({ namespace: undefined }))).to.deep.equal({ kind: 'gone' });
      expect(planNamespace(world({ namespace: namespace('a', true) }))).to.deep.equal({ kind: 'gone' });
    });

    it('does nothing in a namespace it does not select and holds nothing in', () => {
      const plan = converge(planNamespace(world({ name: 'b', namespace: namespace('b') })));
      expect(plan).to.include({ wanted: false });
      expect(plan.copy).to.deep.equal({ kind: 'none' });
      expect(plan.serviceAccounts).to.deep.equal([]);
      expect(plan.removals).to.deep.equal([]);
    });
  });

  describe('the copy', () => {
    it('creates a copy from scratch, recording the source version, with no Event the first time', () => {
      const plan = converge(planNamespace(world()));
      if (plan.copy.kind !== 'create') return expect.fail(plan.copy.kind);
      expect(plan.copy.body.metadata.annotations[SOURCE_VERSION_ANNOTATION]).to.equal('40');
      expect(plan.copy.body.data['.dockerconfigjson']).to.equal(DATA);
      expect(plan.copy.events).to.deep.equal([]);
    });

    it('reports a copy recreated after it was deleted as drift: known synced, or its entry still there', () => {
      const rc = credential();
      const sa = serviceAccount('default', ['acme'], { acme: 'acme' });
      for (const w of [world({ wasSynced: true }), world({ serviceAccounts: [sa] })]) {
        const plan = converge(planNamespace(w));
        if (plan.copy.kind !== 'create') return expect.fail(plan.copy.kind);
        expect(plan.copy.events.map((e) => [e.about, e.type, e.reason])).to.deep.equal([
          ['copy', 'Warning', 'DriftRestored'],
        ]);
      }
      expect(rc.metadata.name).to.equal('acme');
    });

    it('waits, writing nothing, when there is no usable source for a copy that does not exist', () => {
      const sa = serviceAccount('default', ['acme'], { acme: 'acme' });
      const plan = converge(planNamespace(world({ source: MISSING, serviceAccounts: [sa] })));
      expect(plan.copy).to.deep.equal({ kind: 'stop', result: { state: 'waiting', patched: 1 }, events: [] });
      expect(plan.serviceAccounts).to.deep.equal([]);
      expect(plan.removals).to.deep.equal([]);
    });

    it('leaves the name to an older credential that claims it, writing nothing', () => {
      const older = credential('first', { secretName: 'acme' }, '2026-01-01T00:00:00Z');
      const plan = converge(planNamespace(world({ credentials: [credential(), older] })));
      if (plan.copy.kind !== 'stop') return expect.fail(plan.copy.kind);
      expect(plan.copy.result).to.include({ state: 'conflict', reason: 'ClaimedByOlderCredential' });
    });

    it('leaves a Secret it does not own alone under Skip, warns, and remembers it without its data', () => {
      const plan = converge(planNamespace(world({ existing: foreign() })));
      if (plan.copy.kind !== 'stop') return expect.fail(plan.copy.kind);
      expect(plan.copy.result).to.include({ state: 'conflict', reason: 'Conflict' });
      expect(plan.copy.events.map((e) => e.reason)).to.deep.equal(['Conflict']);
      expect(plan.copy.remember?.data).to.equal(undefined);
      expect(plan.serviceAccounts).to.deep.equal([]);
    });

    it('does not adopt a Secret of another type, even under Adopt', () => {
      const rc = credential('acme', { conflictPolicy: 'Adopt' });
      const plan = converge(planNamespace(world({ rc, existing: foreign('Opaque') })));
      if (plan.copy.kind !== 'stop') return expect.fail(plan.copy.kind);
      expect(plan.copy.result.state === 'conflict' && plan.copy.result.message).to.contain(
        'cannot be adopted',
      );
    });

    it('adopts a dockerconfigjson Secret under Adopt, with an Event; waits for a source to adopt with', () => {
      const rc = credential('acme', { conflictPolicy: 'Adopt' });
      const plan = converge(planNamespace(world({ rc, existing: foreign() })));
      if (plan.copy.kind !== 'patch') return expect.fail(plan.copy.kind);
      expect(plan.copy.change).to.equal('adoption');
      expect(plan.copy.events.map((e) => e.reason)).to.deep.equal(['Adopted']);
      const waiting = converge(planNamespace(world({ rc, existing: foreign(), source: MISSING })));
      expect(waiting.copy).to.deep.include({ kind: 'stop', result: { state: 'waiting', patched: 0 } });
    });

    it("takes over a younger live credential's copy as the older claimant, and treats a stale owner as foreign", () => {
      const younger = credential('later', { secretName: 'acme' }, '2026-02-01T00:00:00Z');
      const theirs = { ...copyOf(younger), metadata: { ...copyOf(younger).metadata, name: 'acme' } };
      const plan = converge(planNamespace(world({ credentials: [credential(), younger], existing: theirs })));
      if (plan.copy.kind !== 'patch') return expect.fail(plan.copy.kind);
      expect(plan.copy.change).to.equal('takeover');
      expect(plan.copy.events[0]?.message).to.contain('taken over from RegistryCredential later');
      const stale = converge(planNamespace(world({ existing: theirs })));
      expect(stale.copy.kind).to.equal('stop');
    });

    it('needs no write for a correct copy, and adds its entry to the selected ServiceAccounts', () => {
      const rc = credential('acme', { serviceAccounts: { names: ['default'] } });
      const copy = copyOf(rc);
      const plan = converge(
        planNamespace(
          world({
            rc,
            copies: [copy],
            existing: copy,
            serviceAccounts: [serviceAccount('default'), serviceAccount('builder')],
          }),
        ),
      );
      expect(plan.copy).to.deep.equal({ kind: 'none' });
      expect(
        plan.serviceAccounts.map((s) => [s.sa.metadata.name, s.want, s.patch?.imagePullSecrets]),
      ).to.deep.equal([
        ['default', true, [{ name: 'acme' }]],
        ['builder', false, undefined],
      ]);
    });

    it('tells a rotation (older source version on the copy) from drift (current version, other data)', () => {
      const rc = credential();
      const rotated = copyOf(rc, { data: 'b2xk', version: '30' });
      const drifted = copyOf(rc, { data: 'b2xk', version: '40' });
      const p1 = converge(planNamespace(world({ copies: [rotated], existing: rotated })));
      const p2 = converge(planNamespace(world({ copies: [drifted], existing: drifted })));
      expect(p1.copy.kind === 'patch' && [p1.copy.change, p1.copy.events.length]).to.deep.equal([
        'rotation',
        0,
      ]);
      expect(p2.copy.kind === 'patch' && [p2.copy.change, p2.copy.events.map((e) => e.reason)]).to.deep.equal(
        ['drift', ['DriftRestored']],
      );
    });

    it('restores a removed label as drift, and its own annotations after a spec change as routine', () => {
      const rc = credential();
      const unlabelled = copyOf(rc);
      unlabelled.metadata.labels = {};
      const p1 = converge(planNamespace(world({ copies: [unlabelled], existing: unlabelled })));
      expect(p1.copy.kind === 'patch' && p1.copy.change).to.equal('drift');
      const moved = credential('acme', {
        source: { secretRef: { namespace: 'regcred-system', name: 'other' } },
      });
      const copy = copyOf(rc);
      const p2 = converge(
        planNamespace(world({ rc: moved, credentials: [moved], copies: [copy], existing: copy })),
      );
      expect(p2.copy.kind === 'patch' && [p2.copy.change, p2.copy.events]).to.deep.equal(['routine', []]);
    });
  });

  describe('claimants of one copy name', () => {
    it('yields only to the oldest live credential that selects the namespace under the same name', () => {
      const rc = credential();
      const others = [
        credential('other-name', { secretName: 'different' }, '2025-01-01T00:00:00Z'),
        credential('not-here', { namespaces: { names: ['b'] }, secretName: 'acme' }, '2025-01-01T00:00:00Z'),
        credential('younger', { secretName: 'acme' }, '2026-06-01T00:00:00Z'),
        {
          ...credential('leaving', { secretName: 'acme' }, '2025-01-01T00:00:00Z'),
          metadata: {
            ...credential('leaving').metadata,
            creationTimestamp: '2025-01-01T00:00:00Z',
            deletionTimestamp: '2026-01-03T00:00:00Z',
          },
        },
        credential(
          'broken',
          { secretName: 'acme', namespaces: { selector: { matchLabels: { 'bad key!': 'x' } } } },
          '2025-01-01T00:00:00Z',
        ),
      ];
      expect(converge(planNamespace(world({ rc, credentials: [rc, ...others] }))).copy.kind).to.equal(
        'create',
      );
      const old = credential('old', { secretName: 'acme' }, '2025-06-01T00:00:00Z');
      const oldest = credential('oldest', { secretName: 'acme' }, '2025-01-01T00:00:00Z');
      for (const order of [
        [old, oldest],
        [oldest, old],
      ]) {
        const plan = converge(planNamespace(world({ rc, credentials: [rc, ...order] })));
        expect(
          plan.copy.kind === 'stop' && plan.copy.result.state === 'conflict' && plan.copy.result.message,
        ).to.contain('oldest');
      }
    });

    it('treats a copy-like Secret of an unknown type or without owner references as foreign', () => {
      const rc = credential('acme', { conflictPolicy: 'Adopt' });
      const untyped: Secret = { metadata: { name: 'acme', namespace: 'a', uid: 'u', resourceVersion: '2' } };
      const plan = converge(planNamespace(world({ rc, existing: untyped })));
      expect(
        plan.copy.kind === 'stop' && plan.copy.result.state === 'conflict' && plan.copy.result.message,
      ).to.contain('of type Opaque');
    });

    it('cleans up a deleting credential with an invalid spec, and forgets a terminating namespace', () => {
      const rc = credential('acme', { namespaces: { selector: { matchLabels: { 'bad key!': 'x' } } } });
      rc.metadata.deletionTimestamp = '2026-01-03T00:00:00Z';
      rc.metadata.finalizers = undefined;
      expect(planNamespace(world({ rc, credentials: [rc], namespace: namespace('a', true) }))).to.deep.equal({
        kind: 'gone',
      });
      const unfinalized = credential();
      unfinalized.metadata.finalizers = undefined;
      expect(planNamespace(world({ rc: unfinalized }))).to.deep.equal({ kind: 'skip' });
    });
  });

  describe('leaving a namespace', () => {
    it('removes its entries, then its copy, announcing the removal unless the credential is being deleted', () => {
      const rc = credential('acme', { namespaces: { names: ['elsewhere'] } });
      const copy = copyOf(rc);
      const sa = serviceAccount('default', ['theirs', 'acme'], { acme: 'acme' });
      const plan = converge(
        planNamespace(world({ rc, credentials: [rc], copies: [copy], serviceAccounts: [sa] })),
      );
      expect(plan.wanted).to.equal(false);
      expect(plan.serviceAccounts[0]?.patch?.imagePullSecrets).to.deep.equal([{ name: 'theirs' }]);
      expect(plan.removals.map((r) => [r.copy.metadata.uid, r.events.map((e) => e.reason)])).to.deep.equal([
        ['copy', ['CopyRemoved']],
      ]);
      rc.metadata.deletionTimestamp = '2026-01-03T00:00:00Z';
      const deleting = converge(
        planNamespace(world({ rc, credentials: [rc], copies: [copy], serviceAccounts: [sa] })),
      );
      expect(deleting.removals.map((r) => r.events)).to.deep.equal([[]]);
    });

    it('removes a copy under an old name after a rename, keeping the new one', () => {
      const rc = credential('acme', { secretName: 'new' });
      const old = copyOf(credential(), { name: 'acme' });
      const current = copyOf(rc);
      const plan = converge(
        planNamespace(world({ rc, credentials: [rc], copies: [old, current], existing: current })),
      );
      expect(plan.removals.map((r) => r.copy.metadata.name)).to.deep.equal(['acme']);
      expect(plan.removals[0]?.events).to.deep.equal([]);
    });
  });

  describe('the result', () => {
    it('is synced when every selected ServiceAccount references the copy, waiting otherwise', () => {
      const plan = converge(planNamespace(world()));
      expect(settle(plan, [serviceAccount('default')], 1)).to.deep.equal({ state: 'synced', patched: 1 });
      expect(settle(plan, [serviceAccount('default')], 0)).to.deep.equal({ state: 'waiting', patched: 0 });
      const stopped = converge(planNamespace(world({ source: MISSING })));
      expect(settle(stopped, [], 0)).to.deep.equal({ state: 'waiting', patched: 0 });
      const away = converge(planNamespace(world({ name: 'b', namespace: namespace('b') })));
      expect(settle(away, [], 0)).to.equal(undefined);
    });
  });
});

// --- properties -------------------------------------------------------------------------------------

/** A generated world: one credential and what a namespace may hold, including others' objects. */
const worldArb = fc
  .record({
    selected: fc.boolean(),
    deleting: fc.boolean(),
    adopt: fc.boolean(),
    sourceValid: fc.boolean(),
    existing: fc.constantFrom(
      'none',
      'ours',
      'oursStale',
      'oursDrifted',
      'foreign',
      'foreignOpaque',
      'staleOwner',
    ),
    oldCopy: fc.boolean(),
    serviceAccounts: fc.array(
      fc.record({
        name: fc.constantFrom('default', 'builder', 'ci'),
        others: fc.array(fc.constantFrom('theirs', 'acme', 'old'), { maxLength: 3 }),
        ourEntry: fc.constantFrom('none', 'acme', 'old'),
      }),
      { maxLength: 3 },
    ),
  })
  .map((g): NamespaceWorld => {
    const rc = credential('acme', {
      namespaces: { names: g.selected ? ['a'] : ['elsewhere'] },
      serviceAccounts: { names: ['default', 'builder'] },
      ...(g.adopt ? { conflictPolicy: 'Adopt' as const } : {}),
    });
    if (g.deleting) rc.metadata.deletionTimestamp = '2026-01-03T00:00:00Z';
    const copies: Secret[] = [];
    let existing: Secret | undefined;
    if (g.existing.startsWith('ours')) {
      existing = copyOf(
        rc,
        g.existing === 'oursStale'
          ? { version: '30', data: 'b2xk' }
          : g.existing === 'oursDrifted'
            ? { data: 'b2xk' }
            : {},
      );
      copies.push(existing);
    } else if (g.existing === 'foreign' || g.existing === 'foreignOpaque') {
      existing = foreign(g.existing === 'foreign' ? 'kubernetes.io/dockerconfigjson' : 'Opaque');
    } else if (g.existing === 'staleOwner') {
      existing = {
        ...copyOf(credential('gone')),
        metadata: { ...copyOf(credential('gone')).metadata, name: 'acme', uid: 'stale' },
      };
      copies.push(existing);
    }
    if (g.oldCopy) copies.push(copyOf(rc, { name: 'old' }));
    const seen = new Set<string>();
    const serviceAccounts = g.serviceAccounts
      .filter((s) => !seen.has(s.name) && seen.add(s.name))
      .map((s) => {
        const entries = [...new Set([...s.others, ...(s.ourEntry === 'none' ? [] : [s.ourEntry])])];
        return serviceAccount(s.name, entries, s.ourEntry === 'none' ? undefined : { [s.ourEntry]: 'acme' });
      });
    return world({
      rc,
      credentials: [rc],
      copies,
      existing,
      serviceAccounts,
      source: g.sourceValid ? VALID : MISSING,
    });
  });

/** The world after the plan's writes, as the API server would make it. */
function applied(w: NamespaceWorld, plan: Extract<NamespacePlan, { kind: 'converge' }>): NamespaceWorld {
  let copies = [...w.copies];
  let existing = w.existing;
  const step = plan.copy;
  if (step.kind === 'create') {
    existing = {
      metadata: { ...step.body.metadata, uid: 'new', resourceVersion: '100' },
      type: step.body.type,
      data: step.body.data,
    };
    copies.push(existing);
  } else if (step.kind === 'patch' && existing) {
    const m = step.patch.metadata;
    const data = { ...existing.data, ...step.patch.data } as Record<string, string | null>;
    for (const k of Object.keys(data)) if (data[k] === null) delete data[k];
    existing = {
      ...existing,
      metadata: {
        ...existing.metadata,
        labels: { ...existing.metadata.labels, ...m.labels },
        annotations: { ...existing.metadata.annotations, ...m.annotations },
        ownerReferences: m.ownerReferences ?? existing.metadata.ownerReferences,
        resourceVersion: '101',
      },
      data: data as Record<string, string>,
    };
    copies = [...copies.filter((c) => c.metadata.name !== existing!.metadata.name), existing];
  }
  const removed = new Set(plan.removals.map((r) => r.copy.metadata.name));
  copies = copies.filter((c) => !removed.has(c.metadata.name));
  const serviceAccounts = plan.serviceAccounts.map(({ sa, patch }) => {
    if (!patch) return sa;
    const annotations = { ...sa.metadata.annotations };
    const value = patch.metadata.annotations[PULL_SECRETS_ANNOTATION];
    if (value === null) delete annotations[PULL_SECRETS_ANNOTATION];
    else annotations[PULL_SECRETS_ANNOTATION] = value;
    return { ...sa, metadata: { ...sa.metadata, annotations }, imagePullSecrets: patch.imagePullSecrets };
  });
  return { ...w, copies, existing, serviceAccounts, wasSynced: true };
}

const writes = (plan: NamespacePlan) =>
  plan.kind !== 'converge'
    ? 0
    : (plan.copy.kind === 'create' || plan.copy.kind === 'patch' ? 1 : 0) +
      plan.serviceAccounts.filter((s) => s.patch).length +
      plan.removals.length;

describe('the namespace plan: properties', () => {
  it('keeps every entry someone else wrote, in order', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        const plan = planNamespace(w);
        if (plan.kind !== 'converge') return;
        for (const { sa, patch } of plan.serviceAccounts) {
          if (!patch) continue;
          const ours = new Set(
            Object.keys(JSON.parse(sa.metadata.annotations?.[PULL_SECRETS_ANNOTATION] ?? '{}')),
          );
          const theirs = (sa.imagePullSecrets ?? []).map((e) => e.name).filter((n) => !ours.has(n!));
          const after = patch.imagePullSecrets
            .map((e) => e.name)
            .filter((n) => !ours.has(n!) && n !== 'acme');
          expect(after).to.deep.equal(theirs.filter((n) => n !== 'acme'));
        }
      }),
    );
  });

  it('leaves nothing to do once applied (idempotence)', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        const plan = planNamespace(w);
        if (plan.kind !== 'converge') return;
        const again = planNamespace(applied(w, plan));
        expect(writes(again), JSON.stringify(again)).to.equal(0);
      }),
    );
  });

  it('never writes or removes a Secret whose ownership the live UID does not prove, except to adopt under Adopt', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        const plan = planNamespace(w);
        if (plan.kind !== 'converge') return;
        for (const r of plan.removals)
          expect(r.copy.metadata.ownerReferences?.some((o) => o.uid === w.rc.metadata.uid)).to.equal(true);
        if (plan.copy.kind === 'patch' && w.existing) {
          const ours = w.existing.metadata.ownerReferences?.some((o) => o.uid === w.rc.metadata.uid);
          if (!ours) {
            expect(plan.copy.change).to.equal('adoption');
            expect(w.rc.spec.conflictPolicy).to.equal('Adopt');
            expect(w.existing.type).to.equal('kubernetes.io/dockerconfigjson');
          }
        }
      }),
    );
  });

  it('gives the same plan for the same world', () => {
    // The plan's selection holds closures: compare everything else.
    fc.assert(
      fc.property(worldArb, (w) => {
        expect(JSON.stringify(planNamespace(w))).to.equal(JSON.stringify(planNamespace(w)));
      }),
    );
  });
});
