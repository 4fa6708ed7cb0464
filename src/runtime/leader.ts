/**
 * Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics (client-node has
 * none).
 *
 * Guarantees:
 * - At most one holder at a time, as far as the API server's optimistic concurrency allows: every
 *   write carries the resourceVersion it was computed from.
 * - Expiry is judged by this process's own clock from when it last saw the record change (never by
 *   comparing the holder's timestamps with local time), so clock skew between nodes does not matter.
 * - A leader that cannot renew for `renewDeadlineMs` stops leading (`onStoppedLeading`) before the
 *   lease can expire for the others (`leaseDurationMs` > `renewDeadlineMs`). A renewal the deadline
 *   overtook is abandoned: its answer, however late, sends no Lease update.
 * - `release()` gives the lease up (holder cleared, 1 s duration) so a successor starts at once.
 * - Renewals are the only writes an idle leader makes; followers only read.
 * - `holds()` is false from the moment the renew deadline has passed since the last renewal, by
 *   the monotonic clock, even before the renew loop runs again: a process paused past its lease
 *   (SIGSTOP) and resumed sees its leadership lapsed at once, and sends no Lease update for it.
 *
 * Caveats: a Lease gives no fencing on the API server's side. A write begun before a pause (sent,
 * or with its bytes not yet on the wire) may reach the API server after a successor started;
 * writes that carry resourceVersion preconditions then fail with 409 rather than overwrite what
 * the successor wrote.
 */
import { classify } from './errors.ts';
import type { KubeClient } from './kube.ts';
import type { Logger } from './logger.ts';
import { sleep } from './sleep.ts';

export interface LeaderElectionOptions {
  client: KubeClient;
  logger: Logger;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}

/** RFC 3339 with microseconds, as the API's MicroTime expects. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '000Z');
}

export class LeaderElector {
  private readonly options: LeaderElectionOptions;
  private readonly path: string;
  private observed: { record: string; at: number } | undefined;
  private lease: Lease | undefined;
  private leading = false;
  private failures = 0;
  /** performance.now() of the last successful acquire or renewal while leading. */
  private lastRenew = 0;

  constructor(options: LeaderElectionOptions) {
    if (
      !(options.leaseDurationMs > options.renewDeadlineMs && options.renewDeadlineMs > options.retryPeriodMs)
    ) {
      throw new Error('leader election needs lease duration > renew deadline > retry period');
    }
    this.options = options;
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${options.namespace}/leases/${options.name}`;
  }

  /**
   * Campaigns until leading, then renews until the lease is lost or `signal` aborts. Resolves
   * `'lost'` when leadership was lost, `'stopped'` when aborted (leading or not).
   */
  async run(signal: AbortSignal, onStartedLeading: () => void): Promise<'lost' | 'stopped'> {
    const { retryPeriodMs, renewDeadlineMs, logger, identity } = this.options;
    // Campaign.
    while (!signal.aborted && !this.leading) {
      this.leading = await this.tryAcquireOrRenew();
      if (this.leading) this.lastRenew = performance.now();
      else await sleep(retryPeriodMs, signal);
    }
    if (signal.aborted) return 'stopped';
    logger.info('became leader', { lease: `${this.options.namespace}/${this.options.name}`, identity });
    onStartedLeading();
    // Renew. The deadline is a timer, not a check after each attempt: an attempt that hangs must not
    // keep this process leading past the deadline.
    while (!signal.aborted) {
      await sleep(retryPeriodMs, signal);
      if (signal.aborted) break;
      const left = renewDeadlineMs - (performance.now() - this.lastRenew);
      // An attempt the deadline overtook is abandoned: its answers, when they come, write nothing.
      const attempt = new AbortController();
      const renewed =
        left > 0 &&
        (await Promise.race([this.tryAcquireOrRenew(attempt.signal), sleep(left, signal).then(() => false)]));
      attempt.abort();
      if (renewed && this.holds()) {
        this.lastRenew = performance.now();
      } else if (performance.now() - this.lastRenew >= renewDeadlineMs) {
        this.leading = false;
        logger.error('lost leadership: could not renew the lease in time', { renewDeadlineMs });
        return 'lost';
      }
    }
    return 'stopped';
  }

  /** True while leading and the last renewal is younger than the renew deadline. */
  holds(): boolean {
    return this.leading && performance.now() - this.lastRenew < this.options.renewDeadlineMs;
  }

  /** Gives the lease up if this process holds it, so a successor need not wait for it to expire. */
  async release(): Promise<void> {
    if (!this.leading || !this.lease) return;
    this.leading = false;
    const now = Date.now();
    try {
      await this.options.client.request('PUT', this.path, {
        unfenced: true,
        body: {
          ...this.lease,
          spec: {
            ...this.lease.spec,
            holderIdentity: null,
            leaseDurationSeconds: 1,
            renewTime: microTime(now),
            acquireTime: microTime(now),
          },
        },
      });
      this.options.logger.info('released the lease');
    } catch (err) {
      this.options.logger.warn('could not release the lease', { error: classify(err).message });
    }
  }

  private async tryAcquireOrRenew(abandoned?: AbortSignal): Promise<boolean> {
    const { client, identity, leaseDurationMs, namespace, name } = this.options;
    const now = Date.now();
    let current: Lease;
    try {
      current = await client.request<Lease>('GET', this.path, {
        timeoutMs: this.requestTimeoutMs,
        signal: abandoned,
      });
    } catch (err) {
      if (abandoned?.aborted) return false;
      const c = classify(err);
      if (c.kind !== 'notFound') return this.failed('get', c.message);
      const created = await client
        .request<Lease>('POST', `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`, {
          timeoutMs: this.requestTimeoutMs,
          unfenced: true,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: Math.round(leaseDurationMs / 1000),
              acquireTime: microTime(now),
              renewTime: microTime(now),
              leaseTransitions: 0,
            },
          },
        })
        .catch((e: unknown) => this.failed('create', classify(e).message));
      if (!created) return false;
      this.remember(created);
      return true;
    }
    this.remember(current);
    const spec = current.spec;
    const holder = spec.holderIdentity ?? '';
    const expired = performance.now() - this.observed!.at > (spec.leaseDurationSeconds ?? 0) * 1000;
    if (holder !== '' && holder !== identity && !expired) {
      this.leading = false;
      return false;
    }
    const takingOver = holder !== identity;
    // Resumed after a pause past the deadline, with a GET answered before it, or given up by the
    // renew loop meanwhile: do not renew.
    if (abandoned?.aborted || (this.leading && !this.holds())) return false;
    const updated = await client
      .request<Lease>('PUT', this.path, {
        timeoutMs: this.requestTimeoutMs,
        signal: abandoned,
        unfenced: true,
        body: {
          ...current,
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: Math.round(leaseDurationMs / 1000),
            acquireTime: takingOver ? microTime(now) : spec.acquireTime,
            renewTime: microTime(now),
            leaseTransitions: (spec.leaseTransitions ?? 0) + (takingOver && holder !== '' ? 1 : 0),
          },
        },
      })
      .catch((e: unknown) => this.failed('update', classify(e).message));
    if (!updated) return false;
    this.remember(updated);
    return true;
  }

  /** Notes when the lease record (holder, renew time) was last seen to change. */
  private remember(lease: Lease): void {
    this.failures = 0;
    this.lease = lease;
    const record = `${lease.spec.holderIdentity}|${lease.spec.renewTime}|${lease.spec.leaseDurationSeconds}`;
    if (this.observed?.record !== record) this.observed = { record, at: performance.now() };
  }

  /** Each lease request gets at most this long: well inside the renew deadline. */
  private get requestTimeoutMs(): number {
    return Math.max(1000, Math.floor(this.options.renewDeadlineMs / 2));
  }

  private failed(step: string, message: string): false {
    // A follower that cannot reach the Lease (RBAC, network) must say so, not stay silent.
    this.failures++;
    this.options.logger.log(this.failures >= 3 ? 'warn' : 'debug', 'lease attempt failed', {
      step,
      error: message,
      consecutiveFailures: this.failures,
    });
    return false;
  }
}
