/**
 * kube-apiserver's own count of the requests it served (`apiserver_request_total` in its /metrics
 * text), read one way for the tests and the benchmark alike.
 *
 * Pure functions of the metrics text, with no dependency on the test fixtures: `hack/bench` imports
 * this module too.
 */

/**
 * Sums `apiserver_request_total` over every label but verb, resource and subresource, keyed by
 * `verb resource[/subresource]` (for example `PATCH serviceaccounts`, `PUT registrycredentials/status`).
 * The counts are since kube-apiserver started: compare two readings with `countDelta`.
 */
export function apiserverRequestCounts(metricsText: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + value);
  }
  return counts;
}

/** What grew between two readings, by key; keys that did not grow are left out. */
export function countDelta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}
