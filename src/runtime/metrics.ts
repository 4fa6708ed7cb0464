/**
 * Prometheus metrics (prom-client), named as controller-runtime names them so that existing
 * dashboards and alerts carry over, plus the operator's own under `prefix` (`<prefix>_...`).
 * Domain gauges are registered by the domain on `registry`.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export interface Metrics {
  registry: Registry;
  reconcileTotal: Counter<'controller' | 'result'>;
  reconcileTime: Histogram<'controller' | 'result'>;
  queueDepth: Gauge<'name'>;
  queueLatency: Histogram<'name'>;
  queueRetries: Counter<'name'>;
  requests: Counter<'method' | 'code'>;
  requestLatency: Histogram<'verb'>;
  leader: Gauge<'name'>;
  informerRestarts: Counter<'informer'>;
  eventsDropped: Counter;
  /** Read when Prometheus scrapes; the manager sets them. */
  sample: { queueDepth: (name: string) => number; queueNames: () => string[] };
}

export function createMetrics({ prefix }: { prefix: string }): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const r = { registers: [registry] };
  const sample: Metrics['sample'] = { queueDepth: () => 0, queueNames: () => [] };
  return {
    sample,
    registry,
    reconcileTotal: new Counter({
      name: 'controller_runtime_reconcile_total',
      help: 'Reconciles per controller, by result (success, error, requeue).',
      labelNames: ['controller', 'result'],
      ...r,
    }),
    reconcileTime: new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Time per reconcile, by result.',
      labelNames: ['controller', 'result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      ...r,
    }),
    queueDepth: new Gauge({
      name: 'workqueue_depth',
      help: 'Keys ready in the work queue.',
      labelNames: ['name'],
      collect() {
        for (const name of sample.queueNames()) this.set({ name }, sample.queueDepth(name));
      },
      ...r,
    }),
    queueLatency: new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long a key waited in the queue before it was processed.',
      labelNames: ['name'],
      buckets: [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60],
      ...r,
    }),
    queueRetries: new Counter({
      name: 'workqueue_retries_total',
      help: 'Keys requeued after a failure.',
      labelNames: ['name'],
      ...r,
    }),
    requests: new Counter({
      name: 'rest_client_requests_total',
      help: 'Requests to the Kubernetes API, by HTTP method and status code (0: no answer).',
      labelNames: ['method', 'code'],
      ...r,
    }),
    requestLatency: new Histogram({
      name: 'rest_client_request_duration_seconds',
      help: 'Latency of Kubernetes API requests, by verb.',
      labelNames: ['verb'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      ...r,
    }),
    leader: new Gauge({
      name: 'leader_election_master_status',
      help: '1 while this process holds the leader lease (always 1 without leader election).',
      labelNames: ['name'],
      ...r,
    }),
    informerRestarts: new Counter({
      name: `${prefix}_informer_restarts_total`,
      help: 'Times a list/watch failed and was restarted after a backoff, per informer.',
      labelNames: ['informer'],
      ...r,
    }),
    eventsDropped: new Counter({
      name: `${prefix}_events_dropped_total`,
      help: 'Kubernetes Events not recorded because more were due than the recorder allows.',
      ...r,
    }),
  };
}
