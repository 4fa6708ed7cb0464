/**
 * Prometheus metrics (prom-client), named as controller-runtime names them so that existing
 * dashboards and alerts carry over, plus regcred's own.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export const CONTROLLER = 'registrycredential';

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
  managedCopies: Gauge;
  informerRestarts: Counter<'informer'>;
  /** Read when Prometheus scrapes; the operator sets them. */
  sample: { queueDepth: () => number; managedCopies: () => number };
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const r = { registers: [registry] };
  const sample = { queueDepth: () => 0, managedCopies: () => 0 };
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
        this.set({ name: CONTROLLER }, sample.queueDepth());
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
    managedCopies: new Gauge({
      name: 'regcred_managed_copies',
      help: 'Copies regcred manages (its cache of them).',
      collect() {
        this.set(sample.managedCopies());
      },
      ...r,
    }),
    informerRestarts: new Counter({
      name: 'regcred_informer_restarts_total',
      help: 'Times a list/watch failed and was restarted after a backoff, per informer.',
      labelNames: ['informer'],
      ...r,
    }),
  };
}
