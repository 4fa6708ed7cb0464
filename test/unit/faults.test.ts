/**
 * The fault tools' parts that need no cluster: the proxy's decisions, the competing writer's edit,
 * the APF objects, and the proxy itself in front of a loopback echo server.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { expect } from 'chai';
import {
  competingEdit,
  deliveryTime,
  FaultProxy,
  onAccept,
  throttleObjects,
} from '../../controlplane/faults.ts';
import { eventually } from '../support/wait.ts';

describe('fault tools', () => {
  it('forwards, blackholes or resets a new connection as the mode says', () => {
    expect(onAccept('pass')).to.equal('forward');
    expect(onAccept('silent')).to.equal('blackhole');
    expect(onAccept('refuse')).to.equal('reset');
  });

  it('delays a chunk by the latency but never ahead of the chunk before it', () => {
    expect(deliveryTime(1000, 0, 0)).to.equal(1000);
    expect(deliveryTime(1000, 250, 0)).to.equal(1250);
    // The latency dropped from 500 to 0 ms: the next chunk still waits for the one ahead of it.
    expect(deliveryTime(1010, 0, 1500)).to.equal(1500);
    expect(deliveryTime(1000, -5, 0)).to.equal(1000);
  });

  it("adds the competing writer's entry once, keeps others' entries in order, and always changes the object", () => {
    const sa = { metadata: { name: 'default', resourceVersion: '7' }, imagePullSecrets: [{ name: 'a' }] };
    const once = competingEdit(sa, 'mine', 1);
    expect(once.imagePullSecrets).to.deep.equal([{ name: 'a' }, { name: 'mine' }]);
    expect(once.metadata.resourceVersion).to.equal('7');
    const twice = competingEdit(once, 'mine', 2);
    expect(twice.imagePullSecrets).to.deep.equal([{ name: 'a' }, { name: 'mine' }]);
    expect(twice.metadata.annotations?.['faults.regcred.dev/tick']).to.equal('2');
    expect(competingEdit({ metadata: { name: 'x' } }, 'mine', 1).imagePullSecrets).to.deep.equal([
      { name: 'mine' },
    ]);
  });

  it('gives the throttled ServiceAccount a level of its own that rejects instead of queueing', () => {
    const { priorityLevel, flowSchema } = throttleObjects(
      'slow',
      { namespace: 'regcred-system', name: 'regcred' },
      [{ apiGroup: '', resources: ['secrets'] }],
    ) as {
      priorityLevel: {
        spec: { limited: { nominalConcurrencyShares: number; limitResponse: { type: string } } };
      };
      flowSchema: {
        spec: { priorityLevelConfiguration: { name: string }; rules: { subjects: unknown[] }[] };
      };
    };
    expect(priorityLevel.spec.limited.nominalConcurrencyShares).to.equal(1);
    expect(priorityLevel.spec.limited.limitResponse.type).to.equal('Reject');
    expect(flowSchema.spec.priorityLevelConfiguration.name).to.equal('slow');
    expect(flowSchema.spec.rules[0]!.subjects).to.deep.equal([
      { kind: 'ServiceAccount', serviceAccount: { namespace: 'regcred-system', name: 'regcred' } },
    ]);
  });

  describe('the proxy in front of an echo server', () => {
    let echo: Server;
    let proxy: FaultProxy;
    const sockets: Socket[] = [];

    before(async () => {
      echo = createServer((s) => s.pipe(s));
      await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    });
    beforeEach(async () => {
      proxy = await FaultProxy.start({
        host: '127.0.0.1',
        port: (echo.address() as import('node:net').AddressInfo).port,
      });
    });
    afterEach(async () => {
      for (const s of sockets.splice(0)) s.destroy();
      await proxy.close();
    });
    after(() => new Promise((r) => echo.close(r)));

    function connect(): Promise<{ socket: Socket; received: () => string; closed: () => boolean }> {
      return new Promise((resolve, reject) => {
        let text = '';
        let closed = false;
        const socket = createConnection({ host: '127.0.0.1', port: proxy.port }, () =>
          resolve({ socket, received: () => text, closed: () => closed }),
        );
        sockets.push(socket);
        socket.on('data', (c) => (text += c.toString()));
        socket.on('close', () => (closed = true));
        socket.on('error', () => {});
        socket.once('error', reject);
      });
    }

    it('forwards both ways while healthy', async () => {
      const c = await connect();
      c.socket.write('hello');
      await eventually('the echo came back', () => c.received() === 'hello');
      expect(proxy.stats).to.include({ accepted: 1, open: 1 });
    });

    it('cuts every open connection and accepts new ones afterwards', async () => {
      const [a, b] = [await connect(), await connect()];
      await eventually('both are open', () => proxy.stats.open === 2);
      expect(proxy.cutAll()).to.equal(2);
      await eventually('both were closed', () => a.closed() && b.closed());
      const c = await connect();
      c.socket.write('again');
      await eventually('a new connection works', () => c.received() === 'again');
    });

    it('holds silenced connections open, swallowing every byte, even after heal', async () => {
      const old = await connect();
      old.socket.write('one');
      await eventually('forwarded before the fault', () => old.received() === 'one');
      proxy.silence();
      old.socket.write('two');
      const during = await connect();
      during.socket.write('three');
      await new Promise((r) => setTimeout(r, 300)); // silence is an absence: give it time to show
      expect(old.received()).to.equal('one');
      expect(during.received()).to.equal('');
      expect(old.closed() || during.closed()).to.equal(false);
      proxy.heal();
      old.socket.write('four');
      const after = await connect();
      after.socket.write('five');
      await eventually('a connection opened after heal works', () => after.received() === 'five');
      expect(old.received()).to.equal('one');
    });

    it('resets new connections while refusing, and accepts again after heal', async () => {
      proxy.refuse();
      const refused = await connect().then(
        (c) => eventually('the connection was reset', () => c.closed()),
        () => true,
      );
      expect(refused).to.equal(true);
      expect(proxy.stats.refused).to.equal(1);
      proxy.heal();
      const c = await connect();
      c.socket.write('back');
      await eventually('forwarded after heal', () => c.received() === 'back');
    });

    it('delays chunks by the latency, in order', async () => {
      proxy.setLatency(200);
      const c = await connect();
      const sent = Date.now();
      c.socket.write('a');
      c.socket.write('b');
      await eventually('both arrived', () => c.received() === 'ab');
      // 200 ms each way at least; generous above, the machine is shared.
      expect(Date.now() - sent).to.be.at.least(390);
    });
  });
});
