/**
 * Faults for the local control plane, for tests that prove regcred comes back from them:
 *
 * - `FaultProxy`: a loopback TCP proxy to put between a client and kube-apiserver. TLS passes
 *   through it untouched (the serving certificate names 127.0.0.1, whatever the port). It can cut
 *   every open connection, hold connections open while dropping every byte (a silent watch, as a
 *   NAT that forgot a flow gives), delay every chunk, or refuse new connections.
 * - `CompetingWriter`: another writer of the same ServiceAccounts (as a GitOps tool or a tenant's
 *   script would be), rewriting each with a resourceVersion precondition at a set rate, so that
 *   regcred's own writes meet 409s. It adds one entry of its own to each, which must survive.
 * - `throttleUser`: API Priority and Fairness objects that give one user a priority level with a
 *   tiny concurrency share and no queue, so that its requests are rejected with 429.
 *
 * Guarantees: `FaultProxy.close()` destroys every connection and the listener; `heal()` only
 * ever affects connections accepted after it (a connection that was silenced stays silent, as it
 * would in the real world, until its client gives it up). Caveats: the proxy has no flow control
 * under latency (chunks are buffered in memory); fine for API traffic in tests.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** What the proxy does with a connection: forward it, swallow its bytes, or reset it at once. */
export type ProxyMode = 'pass' | 'silent' | 'refuse';

/** The fate of a newly accepted connection in `mode`; pure. */
export function onAccept(mode: ProxyMode): 'forward' | 'blackhole' | 'reset' {
  return mode === 'pass' ? 'forward' : mode === 'silent' ? 'blackhole' : 'reset';
}

/**
 * When a chunk received at `now` is delivered under `latencyMs`, never before the chunk ahead of it
 * on the same direction (`previousDue`): order is kept when the latency changes mid-stream. Pure.
 */
export function deliveryTime(now: number, latencyMs: number, previousDue: number): number {
  return Math.max(now + Math.max(0, latencyMs), previousDue);
}

interface Link {
  client: Socket;
  upstream: Socket | undefined;
  silent: boolean;
}

export interface ProxyStats {
  accepted: number;
  refused: number;
  cut: number;
  open: number;
}

export class FaultProxy {
  readonly port: number;
  private mode: ProxyMode = 'pass';
  private latencyMs = 0;
  private readonly links = new Set<Link>();
  private readonly counts = { accepted: 0, refused: 0, cut: 0 };

  private readonly server: Server;
  private readonly target: { host: string; port: number };

  private constructor(server: Server, target: { host: string; port: number }) {
    this.server = server;
    this.target = target;
    this.port = (server.address() as import('node:net').AddressInfo).port;
  }

  /** Listens on a free loopback port and forwards to `target`. */
  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const server = createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const proxy = new FaultProxy(server, target);
    server.on('connection', (socket) => proxy.accept(socket));
    return proxy;
  }

  /** `https://127.0.0.1:<port>`, for a kubeconfig's `server`. */
  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get stats(): ProxyStats {
    return { ...this.counts, open: this.links.size };
  }

  /** Destroys every open connection (both sides); new ones are accepted as the mode says. */
  cutAll(): number {
    const n = this.links.size;
    for (const link of [...this.links]) this.drop(link);
    this.counts.cut += n;
    return n;
  }

  /** Every open connection, and every new one until `heal()`, is held open and swallows every byte. */
  silence(): void {
    this.mode = 'silent';
    for (const link of this.links) this.blackhole(link);
  }

  /** New connections are reset as soon as they are accepted; open ones are left as they are. */
  refuse(): void {
    this.mode = 'refuse';
  }

  /** Delays every chunk, in both directions, by this long (0: none). */
  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  /** New connections are forwarded again, without latency. Silenced connections stay silent. */
  heal(): void {
    this.mode = 'pass';
    this.latencyMs = 0;
  }

  async close(): Promise<void> {
    for (const link of [...this.links]) this.drop(link);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    const fate = onAccept(this.mode);
    if (fate === 'reset') {
      this.counts.refused++;
      client.resetAndDestroy();
      return;
    }
    this.counts.accepted++;
    const link: Link = { client, upstream: undefined, silent: false };
    this.links.add(link);
    client.on('error', () => this.drop(link));
    client.on('close', () => this.drop(link));
    if (fate === 'blackhole') {
      this.blackhole(link);
      return;
    }
    const upstream = createConnection({ host: this.target.host, port: this.target.port, noDelay: true });
    link.upstream = upstream;
    upstream.on('error', () => this.drop(link));
    upstream.on('close', () => this.drop(link));
    this.forward(link, client, upstream);
    this.forward(link, upstream, client);
  }

  private forward(link: Link, from: Socket, to: Socket): void {
    let due = 0;
    from.on('data', (chunk: Buffer) => {
      if (link.silent) return;
      const now = Date.now();
      due = deliveryTime(now, this.latencyMs, due);
      if (due <= now) to.write(chunk);
      else
        setTimeout(() => {
          if (!link.silent && !to.destroyed) to.write(chunk);
        }, due - now);
    });
  }

  private blackhole(link: Link): void {
    link.silent = true;
    // Keep reading, so the peer's writes succeed and nothing tells it the bytes go nowhere.
    link.client.on('data', () => {});
    link.upstream?.on('data', () => {});
  }

  private drop(link: Link): void {
    if (!this.links.delete(link)) return;
    link.client.destroy();
    link.upstream?.destroy();
  }
}

/** Writes a copy of a kubeconfig (JSON, as ControlPlane writes them) whose server is `server`. */
export async function kubeconfigVia(path: string, server: string, outPath: string): Promise<string> {
  const config = JSON.parse(await readFile(path, 'utf8')) as { clusters: { cluster: { server: string } }[] };
  for (const c of config.clusters) c.cluster.server = server;
  await writeFile(outPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return outPath;
}

/** The smallest client the fault tools need; regcred's KubeClient is one. */
export interface Api {
  request<T>(
    method: string,
    path: string,
    options?: { body?: unknown; query?: Record<string, string | number | boolean | undefined> },
  ): Promise<T>;
}

interface ServiceAccountJson {
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
  };
  imagePullSecrets?: { name: string }[];
}

/**
 * The ServiceAccount after one competing write: its own `entry` appended if missing (others'
 * entries kept, in order) and a tick annotation bumped, so every write changes the object. Pure.
 */
export function competingEdit(sa: ServiceAccountJson, entry: string, tick: number): ServiceAccountJson {
  const entries = sa.imagePullSecrets ?? [];
  return {
    ...sa,
    metadata: {
      ...sa.metadata,
      annotations: { ...sa.metadata.annotations, 'faults.regcred.dev/tick': String(tick) },
    },
    imagePullSecrets: entries.some((e) => e.name === entry) ? entries : [...entries, { name: entry }],
  };
}

export interface CompetingWriterStats {
  writes: number;
  conflicts: number;
  errors: number;
}

/**
 * Rewrites the ServiceAccounts `targets` (`namespace/name`) round-robin at `perSecond` writes a
 * second: GET, then PUT with that resourceVersion (a 409 is counted and skipped, as a careful
 * writer would do). Until `stop()`.
 */
export class CompetingWriter {
  readonly stats: CompetingWriterStats = { writes: 0, conflicts: 0, errors: 0 };
  private timer: NodeJS.Timeout | undefined;
  private next = 0;
  private tick = 0;
  private readonly inFlight = new Set<Promise<void>>();

  private readonly api: Api;
  private readonly targets: readonly string[];
  private readonly entry: string;
  private readonly perSecond: number;

  constructor(api: Api, targets: readonly string[], entry: string, perSecond: number) {
    this.api = api;
    this.targets = targets;
    this.entry = entry;
    this.perSecond = perSecond;
  }

  start(): void {
    if (this.targets.length === 0 || this.perSecond <= 0) return;
    this.timer = setInterval(() => this.writeOne(), Math.max(1, Math.round(1000 / this.perSecond)));
  }

  async stop(): Promise<CompetingWriterStats> {
    clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all([...this.inFlight]);
    return this.stats;
  }

  private writeOne(): void {
    const key = this.targets[this.next++ % this.targets.length]!;
    const [namespace, name] = key.split('/') as [string, string];
    const path = `/api/v1/namespaces/${namespace}/serviceaccounts/${name}`;
    const tick = ++this.tick;
    const write = (async () => {
      try {
        const sa = await this.api.request<ServiceAccountJson>('GET', path);
        await this.api.request('PUT', path, { body: competingEdit(sa, this.entry, tick) });
        this.stats.writes++;
      } catch (err) {
        if ((err as { code?: number }).code === 409) this.stats.conflicts++;
        else this.stats.errors++;
      }
    })();
    this.inFlight.add(write);
    void write.finally(() => this.inFlight.delete(write));
  }
}

const FLOWCONTROL = '/apis/flowcontrol.apiserver.k8s.io/v1';

/**
 * The PriorityLevelConfiguration and FlowSchema (both named `name`) that put a ServiceAccount's
 * requests on `resources` in a level of its own with one nominal share and no queue: kube-apiserver
 * then rejects what exceeds its ~1% of the server's concurrency with 429 at once. Pure.
 */
export function throttleObjects(
  name: string,
  serviceAccount: { namespace: string; name: string },
  resources: { apiGroup: string; resources: string[] }[],
): { priorityLevel: object; flowSchema: object } {
  return {
    priorityLevel: {
      apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
      kind: 'PriorityLevelConfiguration',
      metadata: { name },
      spec: {
        type: 'Limited',
        limited: { nominalConcurrencyShares: 1, lendablePercent: 0, limitResponse: { type: 'Reject' } },
      },
    },
    flowSchema: {
      apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
      kind: 'FlowSchema',
      metadata: { name },
      spec: {
        priorityLevelConfiguration: { name },
        // Before every built-in schema but `exempt` (1) and `probes` (2).
        matchingPrecedence: 50,
        distinguisherMethod: { type: 'ByUser' },
        rules: [
          {
            subjects: [{ kind: 'ServiceAccount', serviceAccount: serviceAccount }],
            resourceRules: resources.map((r) => ({
              verbs: ['*'],
              apiGroups: [r.apiGroup],
              resources: r.resources,
              namespaces: ['*'],
              clusterScope: true,
            })),
          },
        ],
      },
    },
  };
}

/** Creates `throttleObjects(...)`; resolves with their removal. Takes effect asynchronously. */
export async function throttleServiceAccount(
  api: Api,
  name: string,
  serviceAccount: { namespace: string; name: string },
  resources: { apiGroup: string; resources: string[] }[],
): Promise<() => Promise<void>> {
  const { priorityLevel, flowSchema } = throttleObjects(name, serviceAccount, resources);
  await api.request('POST', `${FLOWCONTROL}/prioritylevelconfigurations`, { body: priorityLevel });
  await api.request('POST', `${FLOWCONTROL}/flowschemas`, { body: flowSchema });
  return async () => {
    await api.request('DELETE', `${FLOWCONTROL}/flowschemas/${name}`);
    await api.request('DELETE', `${FLOWCONTROL}/prioritylevelconfigurations/${name}`);
  };
}
