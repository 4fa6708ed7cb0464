/**
 * Watches the world the benchmark measures, through the API only (never regcred's internals): the
 * copies (regcred's and the floor's), and every ServiceAccount. Records when each copy appeared or
 * changed and when each ServiceAccount appeared and first referenced the copy, on one clock
 * (`performance.now()` of this process), so regcred and the floor are timed the same way.
 */
import type { KubeClient } from '../../src/runtime/kube.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { Reflector } from '../../src/runtime/reflector.ts';
import { Store } from '../../src/runtime/store.ts';

export const FLOOR_LABEL = 'bench.regcred.dev/floor';
const CHECK_EVERY_MS = 20;

interface Meta {
  metadata: { name: string; namespace: string; resourceVersion: string };
}
interface CopyView extends Meta {
  data: string;
}
interface AccountView extends Meta {
  references: boolean;
}

export interface Timeline {
  /** Seconds since the phase started, and the running count, per event. */
  copies: [number, number][];
  patched: [number, number][];
}

export class Observer {
  /** namespace → [time the copy appeared, data] */
  readonly copies = new Map<string, { at: number; data: string }>();
  /** `namespace/name` → time it appeared, and time it first referenced the copy */
  readonly accounts = new Map<string, { added: number; referenced?: number }>();
  private readonly reflectors: { run(signal: AbortSignal): Promise<void>; synced: Promise<void> }[];
  private readonly abort = new AbortController();
  private readonly listeners = new Set<() => void>();
  private pending: NodeJS.Timeout | undefined;

  constructor(client: KubeClient, copyName: string) {
    const logger = silentLogger();
    const onCopy = (raw: unknown): CopyView => {
      const r = raw as Meta & { data?: Record<string, string> };
      return { metadata: r.metadata, data: r.data?.['.dockerconfigjson'] ?? '' };
    };
    const onAccount = (raw: unknown): AccountView => {
      const r = raw as Meta & { imagePullSecrets?: { name: string }[] };
      return {
        metadata: r.metadata,
        references: (r.imagePullSecrets ?? []).some((e) => e.name === copyName),
      };
    };
    const copies = (labelSelector: string) =>
      new Reflector<CopyView>({
        name: labelSelector,
        client,
        path: '/api/v1/secrets',
        labelSelector,
        store: new Store(),
        transform: onCopy,
        logger,
      });
    const accounts = new Reflector<AccountView>({
      name: 'serviceaccounts',
      client,
      path: '/api/v1/serviceaccounts',
      store: new Store(),
      transform: onAccount,
      logger,
    });
    const copyReflectors = [copies('app.kubernetes.io/managed-by=regcred'), copies(`${FLOOR_LABEL}=true`)];
    this.reflectors = [...copyReflectors, accounts];
    for (const r of copyReflectors) {
      r.events$.subscribe((e) => {
        const c = e.object;
        if (c.metadata.name !== copyName) return;
        if (e.type === 'deleted') this.copies.delete(c.metadata.namespace);
        else if (this.copies.get(c.metadata.namespace)?.data !== c.data)
          this.copies.set(c.metadata.namespace, { at: performance.now(), data: c.data });
        this.notify();
      });
    }
    accounts.events$.subscribe((e) => {
      const a = e.object;
      const key = `${a.metadata.namespace}/${a.metadata.name}`;
      const now = performance.now();
      if (e.type === 'deleted') this.accounts.delete(key);
      else {
        const seen = this.accounts.get(key) ?? { added: now };
        if (a.references && seen.referenced === undefined) seen.referenced = now;
        if (!a.references) seen.referenced = undefined;
        this.accounts.set(key, seen);
      }
      this.notify();
    });
  }

  async start(): Promise<void> {
    for (const r of this.reflectors) void r.run(this.abort.signal);
    await Promise.all(this.reflectors.map((r) => r.synced));
  }

  stop(): void {
    clearTimeout(this.pending);
    this.abort.abort();
  }

  /** Resolves once `done()` holds, re-checked on every event (and every second). */
  until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        cleanup();
        resolve();
      };
      const timer = setInterval(check, 1000);
      const deadline = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearInterval(timer);
        clearTimeout(deadline);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Copies present in namespaces starting with `prefix`, optionally with exactly `data`. */
  countCopies(prefix: string, data?: string): number {
    let n = 0;
    for (const [ns, c] of this.copies)
      if (ns.startsWith(prefix) && (data === undefined || c.data === data)) n++;
    return n;
  }

  countReferencing(prefix: string): number {
    let n = 0;
    for (const [key, a] of this.accounts) if (key.startsWith(prefix) && a.referenced !== undefined) n++;
    return n;
  }

  /** The latest time among copies (optionally with `data`) and references under `prefix`. */
  lastEvent(prefix: string, data?: string): number {
    let last = 0;
    for (const [ns, c] of this.copies)
      if (ns.startsWith(prefix) && (data === undefined || c.data === data)) last = Math.max(last, c.at);
    if (data === undefined)
      for (const [key, a] of this.accounts)
        if (key.startsWith(prefix) && a.referenced) last = Math.max(last, a.referenced);
    return last;
  }

  /** Cumulative counts over time since `start`, for the plot. */
  timeline(prefix: string, start: number): Timeline {
    const series = (times: number[]) =>
      times
        .filter((t) => t >= start)
        .sort((a, b) => a - b)
        .map((t, i): [number, number] => [(t - start) / 1000, i + 1]);
    return {
      copies: series([...this.copies].filter(([ns]) => ns.startsWith(prefix)).map(([, c]) => c.at)),
      patched: series(
        [...this.accounts]
          .filter(([k, a]) => k.startsWith(prefix) && a.referenced !== undefined)
          .map(([, a]) => a.referenced!),
      ),
    };
  }

  /**
   * Runs the `until` checks at most once per CHECK_EVERY_MS, not on every event: a check counts
   * over every copy, so checking on each of a rotation's 10,000 events cost this process a core
   * (measured at 10,000: 54 s of CPU in a 78 s rotation), taken from the API server and regcred.
   * The figures come from the events' recorded times, so a later check changes none of them.
   */
  private notify(): void {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      for (const l of [...this.listeners]) l();
    }, CHECK_EVERY_MS);
  }
}
