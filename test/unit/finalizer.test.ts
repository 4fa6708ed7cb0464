/**
 * The finalizer helper: the finalizer goes on before any apply, cleanup runs on deletion whether or
 * not apply ever ran, and removing the finalizer from an object already gone is success.
 */
import { expect } from 'chai';
import { finalized } from '../../src/runtime/finalizer.ts';
import { ApiError } from '../../src/runtime/kube.ts';

function steps(log: string[], options: { cleanupDone?: boolean; patchFails?: unknown } = {}) {
  return {
    patch: async (m: { finalizers: string[]; resourceVersion?: string }) => {
      log.push(`patch ${m.finalizers.join(',')} @${m.resourceVersion}`);
      if (options.patchFails) throw options.patchFails;
    },
    apply: async () => {
      log.push('apply');
      return 'applied';
    },
    cleanup: async () => {
      log.push('cleanup');
      return { done: options.cleanupDone ?? true, result: 'cleaned' };
    },
  };
}

describe('the finalizer helper', () => {
  it('adds the finalizer, after the others and with a precondition, before it applies', async () => {
    const log: string[] = [];
    const obj = { metadata: { finalizers: ['other'], resourceVersion: '5' } };
    expect(await finalized(obj, 'mine', steps(log))).to.deep.equal({ phase: 'apply', result: 'applied' });
    expect(log).to.deep.equal(['patch other,mine @5', 'apply']);
    const again: string[] = [];
    await finalized({ metadata: { finalizers: ['mine'] } }, 'mine', steps(again));
    expect(again).to.deep.equal(['apply']);
  });

  it('cleans up on deletion even if apply never ran, and removes only its finalizer once done', async () => {
    const log: string[] = [];
    const obj = {
      metadata: { finalizers: ['mine', 'other'], deletionTimestamp: 'now', resourceVersion: '6' },
    };
    expect(await finalized(obj, 'mine', steps(log))).to.deep.equal({ phase: 'removed', result: 'cleaned' });
    expect(log).to.deep.equal(['cleanup', 'patch other @6']);
  });

  it('keeps the finalizer while cleanup is under way', async () => {
    const log: string[] = [];
    const obj = { metadata: { finalizers: ['mine'], deletionTimestamp: 'now' } };
    expect(await finalized(obj, 'mine', steps(log, { cleanupDone: false }))).to.deep.equal({
      phase: 'cleanup',
      result: 'cleaned',
    });
    expect(log).to.deep.equal(['cleanup']);
  });

  it('treats a 404 while removing the finalizer as success, and rethrows anything else', async () => {
    const obj = { metadata: { finalizers: ['mine'], deletionTimestamp: 'now' } };
    const gone = new ApiError('PATCH', '/x', 404, { reason: 'NotFound', message: 'gone' });
    expect((await finalized(obj, 'mine', steps([], { patchFails: gone }))).phase).to.equal('removed');
    const conflict = new ApiError('PATCH', '/x', 409, { reason: 'Conflict', message: 'stale' });
    let thrown: unknown;
    await finalized(obj, 'mine', steps([], { patchFails: conflict })).catch((err) => {
      thrown = err;
    });
    expect(thrown).to.equal(conflict);
  });

  it('leaves alone an object being deleted without its finalizer', async () => {
    const log: string[] = [];
    expect(await finalized({ metadata: { deletionTimestamp: 'now' } }, 'mine', steps(log))).to.deep.equal({
      phase: 'ignored',
    });
    expect(log).to.deep.equal([]);
  });
});
