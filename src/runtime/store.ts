/**
 * A read-only (to reconcilers) cache of one kind of object, keyed `namespace/name` (or `name` for
 * cluster-scoped objects), with secondary indexes.
 *
 * Guarantees:
 * - Objects are stored as given (plain JSON, projected by the reflector) and must be treated as
 *   immutable by readers: the same reference is handed out each time.
 * - `writeThrough` puts an object this process just wrote (the API server's answer) into the
 *   cache, so the next reconcile reads its own write before the watch delivers it. It applies only
 *   if the cache still holds the version the write was made from: every write of the operator carries that
 *   precondition (create: absent; update: resourceVersion), so no one else wrote in between, and a
 *   cache that moved on already holds that write or a later version.
 * - `observe` (for the reflector) applies a watched version unless it is one this process wrote
 *   through (the echo: nothing changed) or older than one it wrote through since: a cache never
 *   goes back to an older version. resourceVersions are compared for equality only (they are
 *   opaque).
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
  /** Per key, the versions written through and not yet seen on the watch, oldest first. */
  private readonly writtenThrough = new Map<string, string[]>();

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

  /**
   * Puts an object this process wrote, if the cache still holds `basedOn` (the resourceVersion the
   * write was made from; undefined for a create). Returns whether it did.
   */
  writeThrough(obj: T, basedOn: string | undefined): boolean {
    const key = keyOf(obj);
    if (this.objects.get(key)?.metadata.resourceVersion !== basedOn) return false;
    this.put(obj);
    const rv = obj.metadata.resourceVersion;
    if (rv) this.writtenThrough.set(key, [...(this.writtenThrough.get(key) ?? []), rv]);
    return true;
  }

  /** Removes an object this process deleted, if the cache still holds `basedOn`. */
  deleteThrough(key: string, basedOn: string | undefined): void {
    if (this.objects.get(key)?.metadata.resourceVersion === basedOn) this.remove(key);
  }

  /**
   * Applies a version seen on the watch. Returns undefined when nothing changed for readers: the
   * echo of a write-through, or an older version than one written through. Otherwise the object
   * it replaced (null if there was none).
   */
  observe(obj: T): { old: T | null } | undefined {
    const key = keyOf(obj);
    const pending = this.writtenThrough.get(key);
    if (pending) {
      const at = pending.indexOf(obj.metadata.resourceVersion ?? '');
      if (at >= 0) {
        pending.splice(0, at + 1);
        if (pending.length === 0) this.writtenThrough.delete(key);
        return undefined;
      }
      // A version this process did not write: someone else's, newer than all of ours.
      this.writtenThrough.delete(key);
    }
    return { old: this.put(obj) ?? null };
  }

  /** Removes; returns the removed object. */
  remove(key: string): T | undefined {
    this.writtenThrough.delete(key);
    const old = this.objects.get(key);
    if (!old) return undefined;
    this.unindex(key, old);
    this.objects.delete(key);
    return old;
  }

  /** Forgets every written-through version (after a relist replaced the contents). */
  forgetWrites(): void {
    this.writtenThrough.clear();
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
