/**
 * Kubernetes Events (core/v1), bounded.
 *
 * Guarantees:
 * - The same event (object, reason, message) is recorded at most once per `dedupeMs`.
 * - At most `burst` events at once and `perSecond` on average (token bucket); the rest are dropped
 *   and counted, never queued without bound. An Event is a hint for humans, not state.
 * - Recording never throws and never blocks a reconcile: failures are logged at debug level.
 */
import type { KubeClient } from './kube.ts';
import type { Logger } from './logger.ts';

export interface ObjectReference {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid: string;
}

export interface EventOptions {
  component: string;
  /** Called for each Event dropped by the rate limit. */
  onDropped?: () => void;
  dedupeMs?: number;
  perSecond?: number;
  burst?: number;
  now?: () => number;
}

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly onDropped: () => void;
  private readonly logger: Logger;
  private readonly component: string;
  private readonly dedupeMs: number;
  private readonly perSecond: number;
  private readonly burst: number;
  private readonly now: () => number;
  private tokens: number;
  private refilledAt: number;
  private readonly recent = new Map<string, number>();

  constructor(client: KubeClient, logger: Logger, options: EventOptions) {
    this.client = client;
    this.logger = logger;
    this.component = options.component;
    this.onDropped = options.onDropped ?? (() => {});
    this.dedupeMs = options.dedupeMs ?? 10 * 60_000;
    this.perSecond = options.perSecond ?? 5;
    this.burst = options.burst ?? 25;
    this.now = options.now ?? Date.now;
    this.tokens = this.burst;
    this.refilledAt = this.now();
  }

  /** Records an event about `regarding`; cluster-scoped objects get theirs in `default`, as kubectl expects. */
  record(regarding: ObjectReference, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const now = this.now();
    const key = `${regarding.uid}\u0000${reason}\u0000${message}`;
    const last = this.recent.get(key);
    if (last !== undefined && now - last < this.dedupeMs) return;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
    if (this.tokens < 1) {
      this.onDropped();
      return;
    }
    this.tokens--;
    this.recent.set(key, now);
    if (this.recent.size > 10_000) this.forgetOlderThan(now - this.dedupeMs);
    const namespace = regarding.namespace ?? 'default';
    const time = new Date(now).toISOString();
    const body = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${regarding.name}.`, namespace },
      involvedObject: regarding,
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: this.component,
      firstTimestamp: time,
      lastTimestamp: time,
      count: 1,
    };
    this.client.create(`/api/v1/namespaces/${namespace}/events`, body).catch((err: unknown) => {
      this.logger.debug('could not record event', { reason, error: String(err) });
    });
  }

  private forgetOlderThan(t: number): void {
    for (const [k, at] of this.recent) if (at < t) this.recent.delete(k);
  }
}
