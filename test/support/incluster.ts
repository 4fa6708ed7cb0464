/**
 * Watching regcred run as Pods on the real node, the way an operator of the cluster would: kubectl
 * (logs, exec, port-forward) and the API, never the process's internals.
 *
 * `ElectionObserver` follows the Lease and every regcred Pod's JSON log from its first line, and
 * turns them into leadership intervals: a Pod leads from its `became leader` line until its
 * `released the lease` (or `lost leadership…`) line. Two intervals that overlap would be two
 * leaders; the time between one interval's end and the next one's start is time without a leader.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:https';
import type { KubeClient } from '../../src/runtime/kube.ts';
import { eventually } from './wait.ts';

export const NAMESPACE = 'regcred-system';
export const SELECTOR = 'app.kubernetes.io/name=regcred';

export interface Pod {
  metadata: { name: string; uid: string; deletionTimestamp?: string; labels?: Record<string, string> };
  spec: {
    nodeName?: string;
    containers: {
      name: string;
      image: string;
      args?: string[];
      securityContext?: Record<string, unknown>;
      livenessProbe?: { httpGet?: { path: string; port: string | number } };
      readinessProbe?: { httpGet?: { path: string; port: string | number } };
    }[];
    securityContext?: Record<string, unknown>;
  };
  status?: {
    phase?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: {
      ready: boolean;
      restartCount: number;
      containerID?: string;
      imageID?: string;
      state?: { running?: unknown; terminated?: { exitCode: number; reason?: string } };
    }[];
  };
}

export interface Lease {
  spec: { holderIdentity?: string | null; leaseTransitions?: number };
}

export function isReady(pod: Pod): boolean {
  return (
    !pod.metadata.deletionTimestamp &&
    pod.status?.phase === 'Running' &&
    pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true
  );
}

export async function regcredPods(client: KubeClient): Promise<Pod[]> {
  const list = await client.get<{ items: Pod[] }>(`/api/v1/namespaces/${NAMESPACE}/pods`, {
    labelSelector: SELECTOR,
  });
  return list.items;
}

/** Waits until exactly `count` regcred Pods exist, all Running and Ready (none terminating). */
export async function readyPods(client: KubeClient, count = 2, timeoutMs = 120_000): Promise<Pod[]> {
  return eventually(
    `${count} regcred Pods Running and Ready, and no other`,
    async () => {
      const pods = await regcredPods(client);
      return pods.length === count && pods.every(isReady) ? pods : undefined;
    },
    { timeoutMs, intervalMs: 200 },
  );
}

export async function leaseHolder(client: KubeClient): Promise<string> {
  const lease = await client.get<Lease>(
    `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases/regcred`,
  );
  return lease.spec.holderIdentity ?? '';
}

export interface LogLine {
  pod: string;
  message: string;
  timestamp: string;
  level: string;
  [key: string]: unknown;
}

export interface Interval {
  pod: string;
  start: number;
  end?: number;
}

/** Follows the Lease and the logs of every regcred Pod that runs while it is open. */
export class ElectionObserver {
  readonly lines: LogLine[] = [];
  readonly raw: { pod: string; line: string }[] = [];
  /** Holders as the Lease watch saw them, with the local time of each change. */
  readonly holders: { at: number; holder: string }[] = [];
  /** Exit codes of the Pods' containers as the Pod watch saw them terminate. */
  readonly exitCodes = new Map<string, number>();
  /** `kubectl logs -f` per container instance (pod/containerID): a restarted container is followed anew. */
  private readonly followed = new Map<string, ChildProcess>();
  private readonly abort = new AbortController();
  private readonly watches: Promise<void>[] = [];
  private readonly client: KubeClient;
  private readonly kubectl: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(client: KubeClient, kubectl: string, env: NodeJS.ProcessEnv) {
    this.client = client;
    this.kubectl = kubectl;
    this.env = env;
  }

  start(): void {
    const signal = this.abort.signal;
    const forever = (path: string, query: Record<string, string>, onEvent: (o: unknown) => void) =>
      (async () => {
        while (!signal.aborted) {
          await this.client
            .watch(path, query, (_type, o) => onEvent(o), { signal, inactivityTimeoutMs: 60_000 })
            .catch(() => new Promise((r) => setTimeout(r, 200)));
        }
      })();
    this.watches.push(
      forever(
        `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases`,
        { fieldSelector: 'metadata.name=regcred' },
        (o) => {
          const holder = (o as Lease).spec?.holderIdentity ?? '';
          if (this.holders.at(-1)?.holder !== holder) this.holders.push({ at: Date.now(), holder });
        },
      ),
      forever(`/api/v1/namespaces/${NAMESPACE}/pods`, { labelSelector: SELECTOR }, (o) => {
        const pod = o as Pod;
        const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
        if (terminated) this.exitCodes.set(pod.metadata.name, terminated.exitCode);
        const status = pod.status?.containerStatuses?.[0];
        const instance = `${pod.metadata.name}/${status?.containerID}`;
        if (status?.state?.running && !this.followed.has(instance)) this.follow(pod.metadata.name, instance);
      }),
    );
  }

  private follow(pod: string, instance: string): void {
    const child = spawn(this.kubectl, ['logs', '-f', '-n', NAMESPACE, pod, '-c', 'manager'], {
      env: this.env,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    this.followed.set(instance, child);
    let partial = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        if (!line) continue;
        this.raw.push({ pod, line });
        try {
          this.lines.push({ ...(JSON.parse(line) as LogLine), pod });
        } catch {
          // Kept in `raw`: a test checks that every line is JSON.
        }
      }
    });
  }

  /** Leadership intervals from the logs, in order of their start. */
  intervals(): Interval[] {
    const out: Interval[] = [];
    for (const l of this.lines) {
      const at = Date.parse(l.timestamp);
      if (l.message === 'became leader') out.push({ pod: l.pod, start: at });
      else if (l.message === 'released the lease' || l.message.startsWith('lost leadership')) {
        const open = out.find((i) => i.pod === l.pod && i.end === undefined);
        if (open) open.end = at;
      }
    }
    return out.sort((a, b) => a.start - b.start);
  }

  /**
   * Checks that no two intervals overlap and returns the gaps between consecutive ones (ms);
   * throws naming both Pods when two led at once.
   */
  gaps(): number[] {
    const intervals = this.intervals();
    const gaps: number[] = [];
    for (let i = 1; i < intervals.length; i++) {
      const before = intervals[i - 1]!;
      const next = intervals[i]!;
      if (before.end === undefined || before.end > next.start) {
        throw new Error(
          `two leaders: ${next.pod} became leader at ${new Date(next.start).toISOString()} while ` +
            `${before.pod} led (until ${before.end ? new Date(before.end).toISOString() : 'the end'})`,
        );
      }
      gaps.push(next.start - before.end);
    }
    return gaps;
  }

  /**
   * Waits until every leadership but the last has ended in the logs (each Pod's log arrives on its
   * own stream, so a successor's first line can come before its predecessor's last); an interval
   * that never ends is left for `gaps()` to report.
   */
  async settled(timeoutMs = 15_000): Promise<void> {
    await eventually(
      'every leadership but the last has ended in the logs',
      () =>
        this.intervals()
          .slice(0, -1)
          .every((i) => i.end !== undefined),
      { timeoutMs, intervalMs: 50 },
    ).catch(() => {});
  }

  /** The Pod leading now (an interval without an end). */
  leader(): string | undefined {
    return this.intervals().find((i) => i.end === undefined)?.pod;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    for (const child of this.followed.values()) child.kill();
    await Promise.allSettled(this.watches);
  }
}

/** `kubectl port-forward` to a Pod's port on a free local port, until `stop`. */
export async function portForward(
  kubectl: string,
  env: NodeJS.ProcessEnv,
  pod: string,
  port: number,
): Promise<{ localPort: number; stop: () => void }> {
  const child = spawn(
    kubectl,
    ['port-forward', '-n', NAMESPACE, `pod/${pod}`, `:${port}`, '--address', '127.0.0.1'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c;
  });
  child.stderr.on('data', (c: Buffer) => {
    out += c;
  });
  const localPort = await eventually(
    `kubectl port-forward to ${pod}:${port} listens`,
    () => {
      if (child.exitCode !== null) throw new Error(`kubectl port-forward exited: ${out}`);
      const m = new RegExp(`Forwarding from 127\\.0\\.0\\.1:(\\d+) -> ${port}`).exec(out);
      return m ? Number(m[1]) : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50 },
  );
  return { localPort, stop: () => child.kill() };
}

/** GET over HTTPS, trusting the endpoint's self-signed certificate; status and body. */
export function httpsGet(
  url: string,
  token?: string,
  extra: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {
      ...extra,
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    };
    const req = request(url, { headers, rejectUnauthorized: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The value of a Prometheus series (`name{labels}`) in a scrape, or undefined. */
export function seriesValue(scrape: string, series: string): number | undefined {
  const line = scrape.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
