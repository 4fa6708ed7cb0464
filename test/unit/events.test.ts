/**
 * The Event recorder is bounded: duplicates within the window are dropped, and a burst is capped.
 */
import { expect } from 'chai';
import { EventRecorder } from '../../src/runtime/events.ts';
import type { KubeClient } from '../../src/runtime/kube.ts';
import { silentLogger } from '../../src/runtime/logger.ts';

function recorder(now: { t: number }) {
  const posted: { path: string; body: { reason: string; metadata: { namespace: string } } }[] = [];
  const client = {
    create: async (path: string, body: unknown) => {
      posted.push({ path, body: body as (typeof posted)[number]['body'] });
      return {};
    },
  } as unknown as KubeClient;
  const dropped = { count: 0 };
  const events = new EventRecorder(client, silentLogger(), {
    component: 'regcred',
    perSecond: 2,
    burst: 3,
    now: () => now.t,
    onDropped: () => dropped.count++,
  });
  return { events, posted, dropped };
}

const secret = { apiVersion: 'v1', kind: 'Secret', name: 's', namespace: 'tenant', uid: 'u1' };

describe('the event recorder', () => {
  it('records an event about a namespaced object in its namespace, and a cluster-scoped one in default', () => {
    const { events, posted } = recorder({ t: 0 });
    events.record(secret, 'Warning', 'DriftRestored', 'restored');
    events.record(
      { apiVersion: 'regcred.dev/v1alpha1', kind: 'RegistryCredential', name: 'rc', uid: 'u2' },
      'Normal',
      'Synced',
      'ok',
    );
    expect(posted.map((p) => p.path)).to.deep.equal([
      '/api/v1/namespaces/tenant/events',
      '/api/v1/namespaces/default/events',
    ]);
  });

  it('drops the same event within ten minutes, and records it again after', () => {
    const now = { t: 0 };
    const { events, posted } = recorder(now);
    events.record(secret, 'Warning', 'DriftRestored', 'restored');
    now.t = 9 * 60_000;
    events.record(secret, 'Warning', 'DriftRestored', 'restored');
    expect(posted).to.have.length(1);
    now.t = 11 * 60_000;
    events.record(secret, 'Warning', 'DriftRestored', 'restored');
    expect(posted).to.have.length(2);
  });

  it('caps a burst and refills at its rate, counting what it dropped', () => {
    const now = { t: 0 };
    const { events, posted, dropped } = recorder(now);
    for (let i = 0; i < 10; i++) events.record({ ...secret, uid: `u${i}` }, 'Normal', 'Adopted', 'x');
    expect(posted).to.have.length(3);
    expect(dropped.count).to.equal(7);
    now.t = 1000;
    for (let i = 10; i < 20; i++) events.record({ ...secret, uid: `u${i}` }, 'Normal', 'Adopted', 'x');
    expect(posted).to.have.length(5);
  });
});
