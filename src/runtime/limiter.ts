/** Bounds how many async operations run at once (an operator's parallel writes). */
export class Limiter {
  private readonly capacity: number;
  private active = 0;
  /** The most operations that ran at once. */
  highWater = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(capacity: number) {
    if (!(capacity >= 1)) throw new Error(`concurrency must be at least 1, got ${capacity}`);
    this.capacity = capacity;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.capacity) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    this.highWater = Math.max(this.highWater, this.active);
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
