/**
 * Status computation: counts, the Ready reason and its precedence, the kstatus conditions
 * (Reconciling, Stalled) that go with each reason, failing writes turning Stalled after a set
 * time, the Deleting status, stable transition times (so an unchanged world is not rewritten),
 * rotation, and a bounded list of failures.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import type { RegistryCredential } from '../../src/api/v1alpha1.ts';
import {
  computeStatus,
  DEFAULT_STALL_AFTER_MS,
  deletingStatus,
  type NamespaceResult,
  recheckAfterMs,
  type SourceVerdict,
} from '../../src/regcred/status.ts';

const valid: SourceVerdict = { valid: true, resourceVersion: '10', message: 'ok' };

function credential(
  over: Partial<RegistryCredential['spec']> = {},
  status?: RegistryCredential['status'],
): RegistryCredential {
  return {
    apiVersion: 'regcred.dev/v1alpha1',
    kind: 'RegistryCredential',
    metadata: { name: 'acme', uid: 'u', resourceVersion: '1', generation: 2 },
    spec: {
      source: { secretRef: { namespace: 'regcred-system', name: 'src' } },
      namespaces: { names: ['a'] },
      ...over,
    },
    status,
  };
}

function results(entries: [string, NamespaceResult | undefined][]): Map<string, NamespaceResult | undefined> {
  return new Map(entries);
}

const ready = (s: ReturnType<typeof computeStatus>) => s.conditions?.find((c) => c.type === 'Ready');
const conditionOf = (s: ReturnType<typeof computeStatus>, type: string) =>
  s.conditions?.find((c) => c.type === type);
const T0 = '2026-12-01T10:00:00Z';
const at = (seconds: number) => new Date(Date.parse(T0) + seconds * 1000).toISOString().replace('.000Z', 'Z');
const failedIn = (ns: string): [string, NamespaceResult] => [
  ns,
  { state: 'failed', reason: 'Forbidden', message: 'denied by a policy', patched: 0 },
];

describe('status', () => {
  it('is Ready/Synced with counts when every selected namespace is synced', () => {
    const s = computeStatus({
      rc: credential(),
      now: 'T1',
      source: valid,
      results: results([
        ['a', { state: 'synced', patched: 2 }],
        ['b', { state: 'synced', patched: 1 }],
      ]),
      rotated: false,
    });
    expect(ready(s)).to.deep.include({
      status: 'True',
      reason: 'Synced',
      observedGeneration: 2,
      lastTransitionTime: 'T1',
    });
    expect(s).to.deep.include({
      observedGeneration: 2,
      synced: '2/2',
      source: 'regcred-system/src',
      secretName: 'acme',
    });
    expect(s.namespaces).to.deep.equal({ selected: 2, synced: 2, failed: 0, conflicting: 0 });
    expect(s.serviceAccounts).to.deep.equal({ patched: 3 });
    expect(s.sourceResourceVersion).to.equal('10');
    expect(s.failures).to.equal(undefined);
  });

  it('ranks reasons: invalid spec, suspended, source, failed, conflicts, progressing', () => {
    const r = results([
      ['a', { state: 'failed', reason: 'Forbidden', message: 'no', patched: 0 }],
      ['b', { state: 'conflict', reason: 'Conflict', message: 'x', patched: 0 }],
      ['c', undefined],
    ]);
    const reason = (rc: RegistryCredential, source: SourceVerdict, specError?: string) =>
      ready(computeStatus({ rc, now: T0, source, results: r, rotated: false, specError }))?.reason;
    const invalid: SourceVerdict = { valid: false, reason: 'SourceMalformed', message: 'bad' };
    expect(reason(credential(), valid, 'spec.x: bad')).to.equal('InvalidSpec');
    expect(reason(credential({ suspend: true }), invalid)).to.equal('Suspended');
    expect(reason(credential(), invalid)).to.equal('SourceInvalid');
    expect(reason(credential(), { valid: false, reason: 'SourceNotAllowed', message: 'no' })).to.equal(
      'SourceNotAllowed',
    );
    expect(reason(credential(), valid)).to.equal('Failed');
    const noFailure = results([
      ['b', { state: 'conflict', reason: 'Conflict', message: 'x', patched: 0 }],
      ['c', undefined],
    ]);
    expect(
      ready(computeStatus({ rc: credential(), now: 'T', source: valid, results: noFailure, rotated: false }))
        ?.reason,
    ).to.equal('Conflicts');
    expect(
      ready(
        computeStatus({
          rc: credential(),
          now: 'T',
          source: valid,
          results: results([['c', undefined]]),
          rotated: false,
        }),
      )?.reason,
    ).to.equal('Progressing');
  });

  it('keeps lastTransitionTime while a condition keeps its status, so an unchanged world is not rewritten', () => {
    const input = {
      source: valid,
      results: results([['a', { state: 'synced', patched: 1 }]]),
      rotated: false,
    };
    const first = computeStatus({ rc: credential(), now: 'T1', ...input });
    const again = computeStatus({ rc: credential({}, first), now: 'T2', ...input });
    expect(again).to.deep.equal(first);
  });

  it('records a rotation only once the changed credential is everywhere, and keeps the last good version otherwise', () => {
    const before = computeStatus({
      rc: credential(),
      now: 'T1',
      source: valid,
      results: results([['a', { state: 'synced', patched: 1 }]]),
      rotated: false,
    });
    const newer: SourceVerdict = { valid: true, resourceVersion: '11', message: 'ok' };
    const midway = computeStatus({
      rc: credential({}, before),
      now: 'T2',
      source: newer,
      results: results([['a', undefined]]),
      rotated: true,
    });
    expect(midway.sourceResourceVersion).to.equal('10');
    expect(midway.lastRotationTime).to.equal(undefined);
    const done = computeStatus({
      rc: credential({}, midway),
      now: 'T3',
      source: newer,
      results: results([['a', { state: 'synced', patched: 1 }]]),
      rotated: true,
    });
    expect(done.sourceResourceVersion).to.equal('11');
    expect(done.lastRotationTime).to.equal('T3');
  });

  it('lists at most ten failures, by namespace', () => {
    const many = results(
      Array.from({ length: 25 }, (_, i): [string, NamespaceResult] => [
        `ns-${String(24 - i).padStart(2, '0')}`,
        { state: 'failed', reason: 'Invalid', message: 'm', patched: 0 },
      ]),
    );
    const s = computeStatus({ rc: credential(), now: T0, source: valid, results: many, rotated: false });
    expect(s.failures?.map((f) => f.namespace)).to.deep.equal(
      Array.from({ length: 10 }, (_, i) => `ns-${String(i).padStart(2, '0')}`),
    );
    expect(s.namespaces?.failed).to.equal(25);
  });

  describe('kstatus conditions', () => {
    const compute = (
      over: Partial<RegistryCredential['spec']>,
      source: SourceVerdict,
      entries: [string, NamespaceResult | undefined][],
      specError?: string,
    ) =>
      computeStatus({
        rc: credential(over),
        now: T0,
        source,
        results: results(entries),
        rotated: false,
        specError,
      });
    const kinds = (s: ReturnType<typeof computeStatus>) =>
      s.conditions?.map((c) => `${c.type}=${c.status}/${c.reason}`);
    const synced: [string, NamespaceResult] = ['a', { state: 'synced', patched: 1 }];

    it('goes with each Ready reason: Reconciling while getting somewhere, Stalled when a human must act', () => {
      const invalid: SourceVerdict = { valid: false, reason: 'SourceMalformed', message: 'bad' };
      const conflict: [string, NamespaceResult] = [
        'b',
        { state: 'conflict', reason: 'Conflict', message: 'not ours', patched: 0 },
      ];
      expect(kinds(compute({}, valid, [synced]))).to.deep.equal([
        'Ready=True/Synced',
        'SourceValid=True/Valid',
      ]);
      expect(kinds(compute({}, valid, [synced, ['b', undefined]]))).to.deep.equal([
        'Ready=False/Progressing',
        'Reconciling=True/Progressing',
        'SourceValid=True/Valid',
      ]);
      expect(kinds(compute({}, valid, [synced, failedIn('b')]))).to.deep.equal([
        'Ready=False/Failed',
        'Reconciling=True/Failed',
        'SourceValid=True/Valid',
      ]);
      expect(kinds(compute({}, valid, [synced, conflict]))).to.deep.equal([
        'Ready=False/Conflicts',
        'Stalled=True/Conflicts',
        'SourceValid=True/Valid',
      ]);
      expect(kinds(compute({}, invalid, [synced]))).to.deep.equal([
        'Ready=False/SourceInvalid',
        'Stalled=True/SourceInvalid',
        'SourceValid=False/SourceMalformed',
      ]);
      expect(
        kinds(compute({}, { valid: false, reason: 'SourceNotAllowed', message: 'no' }, [synced])),
      ).to.deep.equal([
        'Ready=False/SourceNotAllowed',
        'Stalled=True/SourceNotAllowed',
        'SourceValid=False/SourceNotAllowed',
      ]);
      expect(kinds(compute({}, valid, [synced], 'spec.x: bad'))).to.deep.equal([
        'Ready=False/InvalidSpec',
        'Stalled=True/InvalidSpec',
        'SourceValid=True/Valid',
      ]);
      // Suspended is what the spec asks for: Ready, with no abnormal condition (kstatus: Current).
      expect(kinds(compute({ suspend: true }, valid, [synced, failedIn('b')]))).to.deep.equal([
        'Ready=True/Suspended',
        'SourceValid=True/Valid',
      ]);
      const stalled = conditionOf(compute({}, valid, [synced, conflict]), 'Stalled');
      expect(stalled?.message).to.equal(
        conditionOf(compute({}, valid, [synced, conflict]), 'Ready')?.message,
      );
    });

    it('turns failing writes from Reconciling into Stalled once they have failed for the set time', () => {
      const stallAfterMs = 60_000;
      const failing = results([['a', { state: 'synced', patched: 1 }], failedIn('b')]);
      const step = (previous: RegistryCredential['status'], now: string) =>
        computeStatus({
          rc: credential({}, previous),
          now,
          source: valid,
          results: failing,
          rotated: false,
          stallAfterMs,
        });

      const first = step(undefined, T0);
      expect(first.failingSince).to.equal(T0);
      expect(conditionOf(first, 'Reconciling')).to.deep.include({
        status: 'True',
        reason: 'Failed',
        message: `retrying the failed writes with backoff; Stalled at ${at(60)} if they still fail`,
      });
      expect(recheckAfterMs(first, Date.parse(T0), stallAfterMs)).to.equal(61_000);

      // A second before: the same status, so nothing is written; the recheck is a second later.
      const before = step(first, at(59));
      expect(before).to.deep.equal(first);
      expect(recheckAfterMs(before, Date.parse(at(59)), stallAfterMs)).to.equal(2000);

      const stalled = step(before, at(60));
      expect(stalled.failingSince).to.equal(T0);
      expect(conditionOf(stalled, 'Reconciling')).to.equal(undefined);
      expect(conditionOf(stalled, 'Stalled')).to.deep.include({
        status: 'True',
        reason: 'Failed',
        lastTransitionTime: at(60),
        message: '1 namespace(s) failed: b (Forbidden); failing since 2026-12-01T10:00:00Z',
      });
      expect(conditionOf(stalled, 'Ready')).to.deep.include({ status: 'False', reason: 'Failed' });
      expect(recheckAfterMs(stalled, Date.parse(at(60)), stallAfterMs)).to.equal(undefined);
      expect(step(stalled, at(600))).to.deep.equal(stalled);

      // Fixed: Ready, and failingSince is gone; failing again starts the clock again.
      const fixed = computeStatus({
        rc: credential({}, stalled),
        now: at(700),
        source: valid,
        results: results([['a', { state: 'synced', patched: 1 }]]),
        rotated: false,
        stallAfterMs,
      });
      expect(fixed.failingSince).to.equal(undefined);
      expect(kinds(fixed)).to.deep.equal(['Ready=True/Synced', 'SourceValid=True/Valid']);
      expect(recheckAfterMs(fixed, Date.parse(at(700)), stallAfterMs)).to.equal(undefined);
      expect(step(fixed, at(800)).failingSince).to.equal(at(800));
    });

    it('stalls failing writes after two minutes by default', () => {
      expect(DEFAULT_STALL_AFTER_MS).to.equal(120_000);
      const failing = results([failedIn('b')]);
      const first = computeStatus({
        rc: credential(),
        now: T0,
        source: valid,
        results: failing,
        rotated: false,
      });
      const later = (s: number) =>
        computeStatus({
          rc: credential({}, first),
          now: at(s),
          source: valid,
          results: failing,
          rotated: false,
        });
      expect(conditionOf(later(119), 'Stalled')).to.equal(undefined);
      expect(conditionOf(later(120), 'Stalled')?.status).to.equal('True');
    });

    it('says Deleting while the finalizer cleans up, for the generation the deletion gave the object', () => {
      const before = computeStatus({
        rc: credential(),
        now: T0,
        source: valid,
        results: results([['a', undefined], failedIn('b')]),
        rotated: false,
      });
      const rc = credential({}, before);
      rc.metadata.generation = 3;
      rc.metadata.deletionTimestamp = at(5);
      const deleting = deletingStatus(rc, at(6));
      expect(deleting.observedGeneration).to.equal(3);
      expect(kinds(deleting)).to.deep.equal([
        'Ready=False/Deleting',
        'Reconciling=True/Deleting',
        'SourceValid=True/Valid',
      ]);
      expect(deleting.conditions?.every((c) => c.observedGeneration === 3)).to.equal(true);
      // Ready was False already, Reconciling True: their transition times stay.
      expect(conditionOf(deleting, 'Ready')?.lastTransitionTime).to.equal(T0);
      expect(conditionOf(deleting, 'Reconciling')?.lastTransitionTime).to.equal(T0);
      expect(deleting.failingSince).to.equal(undefined);
      expect(deleting.namespaces).to.deep.equal(before.namespaces);
      expect(deletingStatus({ ...rc, status: deleting }, at(30))).to.deep.equal(deleting);
    });

    it('holds the conventions for any world: never both Reconciling and Stalled, each present only True, every generation observed, stable when recomputed', () => {
      const result = fc.oneof(
        fc.constant(undefined),
        fc.constant<NamespaceResult>({ state: 'synced', patched: 1 }),
        fc.constant<NamespaceResult>({ state: 'waiting', patched: 0 }),
        fc.constant<NamespaceResult>({ state: 'failed', reason: 'Forbidden', message: 'no', patched: 0 }),
        fc.constant<NamespaceResult>({ state: 'conflict', reason: 'Conflict', message: 'x', patched: 0 }),
      );
      const source = fc.constantFrom<SourceVerdict>(
        valid,
        { valid: false, reason: 'SourceNotFound', message: 'missing' },
        { valid: false, reason: 'SourceNotAllowed', message: 'no' },
      );
      fc.assert(
        fc.property(
          fc.array(result, { maxLength: 6 }),
          source,
          fc.boolean(),
          fc.boolean(),
          fc.integer({ min: 1, max: 9 }),
          fc.integer({ min: 0, max: 600 }),
          (rs, src, suspend, badSpec, generation, seconds) => {
            const rc = credential({ suspend });
            rc.metadata.generation = generation;
            const input = {
              source: src,
              results: results(rs.map((r, i): [string, NamespaceResult | undefined] => [`ns-${i}`, r])),
              rotated: false,
              specError: badSpec ? 'spec.x: bad' : undefined,
            };
            const s = computeStatus({ rc, now: at(seconds), ...input });
            const types = s.conditions!.map((c) => c.type);
            expect(types.filter((c) => c === 'Ready')).to.have.length(1);
            expect(types.includes('Reconciling') && types.includes('Stalled')).to.equal(false);
            for (const c of s.conditions!) {
              expect(c.observedGeneration).to.equal(generation);
              if (c.type === 'Reconciling' || c.type === 'Stalled') expect(c.status).to.equal('True');
            }
            expect(s.observedGeneration).to.equal(generation);
            expect(computeStatus({ ...input, rc: { ...rc, status: s }, now: at(seconds) })).to.deep.equal(s);
          },
        ),
      );
    });
  });
});
