/**
 * Status computation: counts, the Ready reason and its precedence, stable transition times (so an
 * unchanged world is not rewritten), rotation, and a bounded list of failures.
 */
import { expect } from 'chai';
import type { RegistryCredential } from '../../src/api/v1alpha1.ts';
import { computeStatus, type NamespaceResult, type SourceVerdict } from '../../src/regcred/status.ts';

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
      ready(computeStatus({ rc, now: 'T', source, results: r, rotated: false, specError }))?.reason;
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
    const s = computeStatus({ rc: credential(), now: 'T', source: valid, results: many, rotated: false });
    expect(s.failures?.map((f) => f.namespace)).to.deep.equal(
      Array.from({ length: 10 }, (_, i) => `ns-${String(i).padStart(2, '0')}`),
    );
    expect(s.namespaces?.failed).to.equal(25);
  });
});
