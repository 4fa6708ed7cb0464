/**
 * A work queue of string keys with controller-runtime's semantics.
 *
 * Guarantees:
 * - Dedupe: a key is queued at most once; adding a queued key does nothing.
 * - No concurrent runs of a key: a key added while it is being processed is marked dirty and
 *   queued again once, when `done` is called for it.
 * - Delayed adds: each key has at most one pending schedule, and the earlier due time wins.
 * - Per-key exponential backoff with jitter (`addRateLimited`), reset by `forget`.
 * - FIFO among ready keys; `get` waits for the next one and yields `undefined` after `shutDown`.
 *
 * The clock is injectable so tests run in virtual time.
 */
import { type BackoffPolicy, backoffDelay, DEFAULT_BACKOFF } from './backoff.ts';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface QueueOptions {
  clock?: Clock;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** Called for each key handed out, with the time it waited while ready. */
  onDequeue?: (key: string, waitedMs: number) => void;
}

export class WorkQueue {
  private readonly clock: Clock;
  private readonly backoff: BackoffPolicy;
  private readonly random: () => number;
  private readonly onDequeue: ((key: string, waitedMs: number) => void) | undefined;
  private ready: string[] = [];
  private head = 0;
  /** Ready keys and when they became ready. */
  private readonly queued = new Map<string, number>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failureCounts = new Map<string, number>();
  /** Pending delayed adds: key → due time, and a min-heap of [due, key] (stale entries skipped). */
  private readonly delayed = new Map<string, number>();
  private heap: [number, string][] = [];
  private timer: unknown;
  private timerDue = Number.POSITIVE_INFINITY;
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private shuttingDown = false;

  constructor(options: QueueOptions = {}) {
    this.clock = options.clock ?? realClock;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.random = options.random ?? Math.random;
    this.onDequeue = options.onDequeue;
  }

  /** Keys ready to be handed out. */
  get length(): number {
    return this.queued.size;
  }

  /** Keys waiting for a delayed add to come due. */
  get waiting(): number {
    return this.delayed.size;
  }

  get inFlight(): number {
    return this.processing.size;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    this.delayed.delete(key);
    if (this.queued.has(key)) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    this.enqueue(key);
  }

  /**
   * Adds `key` like `add`, unless it is waiting for a delayed add (a backoff): for nudges that must
   * not cut a failing key's backoff short. A key being processed runs once more afterwards, as with
   * `add`, since what it read may already be stale.
   */
  addUnlessBackingOff(key: string): void {
    if (this.delayed.has(key)) return;
    this.add(key);
  }

  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    const due = this.clock.now() + delayMs;
    const current = this.delayed.get(key);
    if (current !== undefined && current <= due) return;
    this.delayed.set(key, due);
    heapPush(this.heap, [due, key]);
    this.armTimer();
  }

  /** Requeues after the key's next backoff delay; returns that delay. */
  addRateLimited(key: string): number {
    const failures = (this.failureCounts.get(key) ?? 0) + 1;
    this.failureCounts.set(key, failures);
    const delay = backoffDelay(failures, this.backoff, this.random);
    this.addAfter(key, delay);
    return delay;
  }

  /** Resets the key's backoff (after a success). */
  forget(key: string): void {
    this.failureCounts.delete(key);
  }

  /** The next ready key, marked as processing; `undefined` once shut down. */
  get(): Promise<string | undefined> {
    const key = this.take();
    if (key !== undefined || this.shuttingDown) return Promise.resolve(key);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Ends the processing of `key`; a key added meanwhile is queued again now. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
  }

  /** Stops handing out keys; pending `get`s resolve with `undefined`. */
  shutDown(): void {
    this.shuttingDown = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  private enqueue(key: string): void {
    this.queued.set(key, this.clock.now());
    this.ready.push(key);
    const waiter = this.waiters.shift();
    if (waiter) waiter(this.take());
  }

  private take(): string | undefined {
    while (this.head < this.ready.length) {
      const key = this.ready[this.head++]!;
      if (this.head > 1024 && this.head * 2 > this.ready.length) {
        this.ready = this.ready.slice(this.head);
        this.head = 0;
      }
      const since = this.queued.get(key);
      if (since === undefined) continue;
      this.queued.delete(key);
      this.processing.add(key);
      this.onDequeue?.(key, this.clock.now() - since);
      return key;
    }
    return undefined;
  }

  private armTimer(): void {
    const next = this.heap[0];
    if (!next || next[0] >= this.timerDue) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timerDue = next[0];
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, next[0] - this.clock.now()));
  }

  private fire(): void {
    this.timer = undefined;
    this.timerDue = Number.POSITIVE_INFINITY;
    const now = this.clock.now();
    while (this.heap.length > 0 && this.heap[0]![0] <= now) {
      const [due, key] = heapPop(this.heap)!;
      if (this.delayed.get(key) !== due) continue; // superseded by an earlier schedule or an add
      this.delayed.delete(key);
      this.add(key);
    }
    this.armTimer();
  }
}

function heapPush(heap: [number, string][], item: [number, string]): void {
  heap.push(item);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]![0] <= heap[i]![0]) break;
    [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
    i = parent;
  }
}

function heapPop(heap: [number, string][]): [number, string] | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0 && last) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && heap[l]![0] < heap[m]![0]) m = l;
      if (r < heap.length && heap[r]![0] < heap[m]![0]) m = r;
      if (m === i) break;
      [heap[m], heap[i]] = [heap[i]!, heap[m]!];
      i = m;
    }
  }
  return top;
}
