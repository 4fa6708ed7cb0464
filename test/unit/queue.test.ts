/**
 * The work queue's semantics, in virtual time.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { backoffDelay } from '../../src/runtime/backoff.ts';
import { type Clock, WorkQueue } from '../../src/runtime/queue.ts';

class FakeClock implements Clock {
  time = 0;
  private timers: { due: number; fn: () => void; id: number }[] = [];
  private nextId = 0;
  now(): number {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ due: this.time + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      this.timers.sort((a, b) => a.due - b.due);
      const next = this.timers[0];
      if (!next || next.due > end) break;
      this.timers.shift();
      this.time = next.due;
      next.fn();
    }
    this.time = end;
  }
}

/** Takes every key that is ready now, without waiting. */
async function drain(q: WorkQueue): Promise<string[]> {
  const out: string[] = [];
  while (q.length > 0) out.push((await q.get())!);
  return out;
}

describe('the work queue', () => {
  let clock: FakeClock;
  let q: WorkQueue;
  beforeEach(() => {
    clock = new FakeClock();
    q = new WorkQueue({ clock, random: () => 1 });
  });

  it('hands out keys in the order they were added', async () => {
    q.add('a');
    q.add('b');
    q.add('c');
    expect(await drain(q)).to.deep.equal(['a', 'b', 'c']);
  });

  it('dedupes a key added again while it is queued', async () => {
    q.add('a');
    q.add('b');
    q.add('a');
    expect(await drain(q)).to.deep.equal(['a', 'b']);
  });

  it('never hands out a key that is being processed; one added meanwhile runs once more after done', async () => {
    q.add('a');
    const key = await q.get();
    q.add('a');
    q.add('a');
    expect(q.length).to.equal(0);
    q.done(key!);
    expect(await drain(q)).to.deep.equal(['a']);
    q.done('a');
    expect(q.length).to.equal(0);
  });

  it('delays an addAfter until it is due', async () => {
    q.addAfter('a', 1000);
    clock.advance(999);
    expect(q.length).to.equal(0);
    clock.advance(1);
    expect(await drain(q)).to.deep.equal(['a']);
  });

  it('keeps the earlier due time when a key is scheduled twice', async () => {
    q.addAfter('a', 5000);
    q.addAfter('a', 1000);
    q.addAfter('a', 3000);
    clock.advance(1000);
    expect(await drain(q)).to.deep.equal(['a']);
    q.done('a');
    clock.advance(10_000);
    expect(q.length).to.equal(0);
  });

  it('runs a scheduled key at once when it is added, and not again at the old due time', async () => {
    q.addAfter('a', 1000);
    q.add('a');
    expect(await drain(q)).to.deep.equal(['a']);
    q.done('a');
    clock.advance(2000);
    expect(q.length).to.equal(0);
  });

  it('backs off exponentially per key, and forget resets it', () => {
    expect(q.addRateLimited('a')).to.equal(100);
    expect(q.addRateLimited('a')).to.equal(200);
    expect(q.addRateLimited('a')).to.equal(400);
    expect(q.addRateLimited('b')).to.equal(100);
    q.forget('a');
    expect(q.addRateLimited('a')).to.equal(100);
  });

  it('caps the backoff, and jitters it within the upper half', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (failures, r) => {
          const d = backoffDelay(failures, { baseMs: 100, maxMs: 60_000 }, () => r);
          const exp = Math.min(60_000, 100 * 2 ** (failures - 1));
          return d >= Math.floor(exp / 2) && d <= exp;
        },
      ),
    );
  });

  it('lets addUnlessBackingOff leave a key waiting out a backoff alone, and rerun a running key', async () => {
    q.addRateLimited('a'); // scheduled in 100 ms
    q.addUnlessBackingOff('a');
    expect(q.length).to.equal(0);
    clock.advance(100);
    const running = await q.get();
    expect(running).to.equal('a');
    // Running now: what it read may be stale (say, a rotated source), so it runs once more.
    q.addUnlessBackingOff('a');
    expect(q.length).to.equal(0);
    q.done('a');
    expect(await drain(q)).to.deep.equal(['a']);
    q.addUnlessBackingOff('b');
    q.addUnlessBackingOff('b');
    expect(await drain(q)).to.deep.equal(['b']);
  });

  it('wakes a waiting get when a key arrives, and resolves waiting gets with undefined on shutdown', async () => {
    const waiting = q.get();
    q.add('x');
    expect(await waiting).to.equal('x');
    const idle = q.get();
    q.shutDown();
    expect(await idle).to.equal(undefined);
    q.add('y');
    expect(await q.get()).to.equal(undefined);
  });

  it('reports how long a key waited while ready', async () => {
    const waits: number[] = [];
    const timed = new WorkQueue({ clock, onDequeue: (_k, ms) => waits.push(ms) });
    timed.add('a');
    clock.advance(250);
    await timed.get();
    expect(waits).to.deep.equal([250]);
  });

  it('loses no key, delayed ones included, and runs none concurrently under any interleaving', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('add' as const), key: fc.constantFrom('a', 'b', 'c') }),
            fc.record({
              op: fc.constant('addAfter' as const),
              key: fc.constantFrom('a', 'b', 'c'),
              ms: fc.integer({ min: 1, max: 50 }),
            }),
            fc.record({ op: fc.constant('get' as const) }),
            fc.record({ op: fc.constant('done' as const) }),
            fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 30 }) }),
          ),
          { maxLength: 60 },
        ),
        async (ops) => {
          const c = new FakeClock();
          const queue = new WorkQueue({ clock: c });
          const inFlight: string[] = [];
          /** Keys added (now or due) since they last started: each must start again later. */
          const owed = new Set<string>();
          for (const o of ops) {
            if (o.op === 'add') {
              queue.add(o.key);
              owed.add(o.key);
            } else if (o.op === 'addAfter') {
              queue.addAfter(o.key, o.ms);
              owed.add(o.key);
            } else if (o.op === 'tick') {
              c.advance(o.ms);
            } else if (o.op === 'get' && queue.length > 0) {
              const key = (await queue.get())!;
              if (inFlight.includes(key)) return false;
              inFlight.push(key);
              owed.delete(key);
            } else if (o.op === 'done' && inFlight.length > 0) {
              queue.done(inFlight.shift()!);
            }
          }
          // Finish everything: every owed key must still come out.
          for (const k of inFlight.splice(0)) queue.done(k);
          c.advance(1000);
          for (;;) {
            if (queue.length === 0) break;
            const key = (await queue.get())!;
            owed.delete(key);
            queue.done(key);
          }
          return owed.size === 0;
        },
      ),
    );
  });
});
