/**
 * A read-only (to reconcilers) cache of one kind of object, keyed `namespace/name` (or `name` for
 * cluster-scoped objects), with secondary indexes.
 *
 * Guarantees:
 * - Objects are stored as given (plain JSON, projected by the reflector) and must be treated as
 *   immutable by readers: the same reference is handed out each time.
 * - `writeThrough` puts an object regcred itself just wrote (the API server's answer) into the
 *   cache without emitting an event, so the next reconcile reads its own write even before the
 *   watch delivers it. This is safe because every regcred write is guarded by a precondition
 *   (create: absent; update: resourceVersion), so the watch's next event for that object is that
 *   same write, or a later one.
 */
export interface Meta {
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string };
}

export type IndexFn<T> = (obj: T) => readonly string[];

export function keyOf(obj: Meta): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

export class Store<T extends Meta> {
  private readonly objects = new Map<string, T>();
  private readonly indexFns: Record<string, IndexFn<T>>;
  private readonly indexes = new Map<string, Map<string, Set<string>>>();

  constructor(indexFns: Record<string, IndexFn<T>> = {}) {
    this.indexFns = indexFns;
    for (const name of Object.keys(indexFns)) this.indexes.set(name, new Map());
  }

  get size(): number {
    return this.objects.size;
  }

  get(key: string): T | undefined {
    return this.objects.get(key);
  }

  list(): IterableIterator<T> {
    return this.objects.values();
  }

  /** Objects whose index `name` yields `value`. */
  byIndex(name: string, value: string): T[] {
    const keys = this.indexes.get(name)?.get(value);
    if (!keys) return [];
    const out: T[] = [];
    for (const k of keys) {
      const obj = this.objects.get(k);
      if (obj) out.push(obj);
    }
    return out;
  }

  /** Inserts or replaces; returns the previous object. */
  put(obj: T): T | undefined {
    const key = keyOf(obj);
    const old = this.objects.get(key);
    if (old) this.unindex(key, old);
    this.objects.set(key, obj);
    this.index(key, obj);
    return old;
  }

  /** Removes; returns the removed object. */
  remove(key: string): T | undefined {
    const old = this.objects.get(key);
    if (!old) return undefined;
    this.unindex(key, old);
    this.objects.delete(key);
    return old;
  }

  keys(): IterableIterator<string> {
    return this.objects.keys();
  }

  private index(key: string, obj: T): void {
    for (const [name, fn] of Object.entries(this.indexFns)) {
      const index = this.indexes.get(name)!;
      for (const value of fn(obj)) {
        const keys = index.get(value);
        if (keys) keys.add(key);
        else index.set(value, new Set([key]));
      }
    }
  }

  private unindex(key: string, obj: T): void {
    for (const [name, fn] of Object.entries(this.indexFns)) {
      const index = this.indexes.get(name)!;
      for (const value of fn(obj)) {
        const keys = index.get(value);
        keys?.delete(key);
        if (keys?.size === 0) index.delete(value);
      }
    }
  }
}
