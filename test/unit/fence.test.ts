/**
 * The client's write fence, which keeps a leader resumed after a pause past its renew deadline
 * from writing before its elector notices (the SIGSTOP fault scenario fails without it).
 */
import { KubeConfig } from '@kubernetes/client-node';
import { expect } from 'chai';
import { FencedError, KubeClient } from '../../src/runtime/kube.ts';

function client(): { client: KubeClient; sent: string[] } {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: true }],
    users: [{ name: 'u', token: 'x' }],
    contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
    currentContext: 'c',
  });
  const c = new KubeClient(config);
  const sent: string[] = [];
  c.onRequest((method, path) => sent.push(`${method} ${path}`));
  return { client: c, sent };
}

describe('the write fence', () => {
  it('refuses every write while closed, without sending it', async () => {
    const { client: c, sent } = client();
    c.fence = () => 'this replica does not hold the lease';
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const err = await c
        .request(method, '/api/v1/namespaces/a/secrets/b', { body: {} })
        .catch((e: Error) => e);
      expect(err, method).to.be.instanceOf(FencedError);
      expect((err as Error).message).to.contain('does not hold the lease');
    }
    expect(sent).to.deep.equal([]);
  });

  it('lets reads, and writes marked unfenced (the Lease), through', async () => {
    const { client: c, sent } = client();
    c.fence = () => 'closed';
    const read = await c.request('GET', '/api/v1/namespaces').catch((e) => e);
    const lease = await c
      .request('PUT', '/apis/coordination.k8s.io/v1/namespaces/a/leases/b', { body: {}, unfenced: true })
      .catch((e) => e);
    // Both were really sent (and failed on the closed port), not fenced.
    for (const err of [read, lease]) expect(err).to.not.be.instanceOf(FencedError);
    expect(sent).to.have.length(2);
  });

  it('sends writes while open', async () => {
    const { client: c, sent } = client();
    c.fence = () => undefined;
    const err = await c.request('PATCH', '/api/v1/namespaces/a', { body: {} }).catch((e) => e);
    expect(err).to.not.be.instanceOf(FencedError);
    expect(sent).to.deep.equal(['PATCH /api/v1/namespaces/a']);
  });
});
