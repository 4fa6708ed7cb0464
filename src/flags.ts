/**
 * Command-line flags of the operator. Every flag is listed by `--help`; bad values are reported
 * with the flag's name and what it accepts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { LOG_LEVELS, type LogLevel } from './runtime/logger.ts';

const IN_CLUSTER_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export interface Flags {
  help: boolean;
  kubeconfig: string | undefined;
  sourceNamespaces: string[];
  concurrency: number;
  logLevel: LogLevel;
  resyncPeriodMs: number;
  stallAfterMs: number;
  leaderElect: boolean;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  leaseNamespace: string;
  leaseName: string;
  healthProbeBindAddress: string;
  metricsBindAddress: string;
  metricsSecure: boolean;
  metricsCertDir: string | undefined;
}

export const HELP = `regcred: keeps registry pull credentials in tenant namespaces and ServiceAccounts.

Usage: regcred [flags]

Flags:
  --source-namespaces=a,b   Namespaces whose Secrets may be sources. Default: the operator's own
                            namespace (POD_NAMESPACE, else the in-cluster namespace file, else
                            regcred-system). A RegistryCredential pointing elsewhere is refused.
  --concurrency=N           Parallel API writes and reconcile workers (default 32).
  --resync-period=D         Safety-net requeue of every RegistryCredential, e.g. 30s, 10m, 1h;
                            0 disables it (default 10m). Converged state costs no API calls.
  --stall-after=D           How long writes may keep failing (Ready reason Failed, Reconciling)
                            before a RegistryCredential is reported Stalled, which kstatus and
                            Flux read as Failed and Argo CD as Degraded (default 2m).
  --log-level=L             error, warn, info or debug (default info). Logs are JSON on stderr.
  --kubeconfig=PATH         Kubeconfig to use. Default: $KUBECONFIG, else ~/.kube/config, else the
                            in-cluster ServiceAccount. With none of them, regcred exits.

  --leader-elect            Elect a leader on a coordination.k8s.io Lease; only the leader writes
                            (default off; on in config/manager for two replicas).
  --leader-elect-lease-duration=D          How long a lease lasts without renewal (default 15s).
  --leader-elect-renew-deadline=D          How long the leader retries renewing before it gives
                                           up leading (default 10s).
  --leader-elect-retry-period=D            Time between attempts to acquire or renew (default 2s).
  --leader-elect-resource-namespace=NS     Namespace of the Lease (default: as --source-namespaces).
  --leader-elect-resource-name=NAME        Name of the Lease (default regcred).

  --health-probe-bind-address=ADDR  /healthz and /readyz (default :8081; 0 disables).
  --metrics-bind-address=ADDR       /metrics (default 0: off; e.g. :8443).
  --metrics-secure                  Serve /metrics over HTTPS, only to callers whose token passes a
                                    TokenReview and a SubjectAccessReview for GET /metrics.
  --metrics-cert-dir=DIR            tls.crt and tls.key for --metrics-secure (default: a
                                    self-signed certificate made at start).
  -h, --help                Show this help.
`;

export class FlagError extends Error {
  override name = 'FlagError';
}

/** Parses `10m`, `30s`, `1h30m`, `250ms` or `0` into milliseconds. */
export function parseDuration(text: string): number {
  if (text === '0') return 0;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = text;
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) throw new FlagError(`invalid duration "${text}" (use e.g. 30s, 10m, 1h)`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return total;
}

export function defaultSourceNamespace(
  env: NodeJS.ProcessEnv,
  namespaceFile = IN_CLUSTER_NAMESPACE_FILE,
): string {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE;
  if (existsSync(namespaceFile)) {
    const ns = readFileSync(namespaceFile, 'utf8').trim();
    if (ns) return ns;
  }
  return 'regcred-system';
}

export function parseFlags(argv: string[], env: NodeJS.ProcessEnv = process.env): Flags {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        kubeconfig: { type: 'string' },
        'source-namespaces': { type: 'string' },
        concurrency: { type: 'string' },
        'log-level': { type: 'string' },
        'resync-period': { type: 'string' },
        'stall-after': { type: 'string' },
        'leader-elect': { type: 'boolean' },
        'leader-elect-lease-duration': { type: 'string' },
        'leader-elect-renew-deadline': { type: 'string' },
        'leader-elect-retry-period': { type: 'string' },
        'leader-elect-resource-namespace': { type: 'string' },
        'leader-elect-resource-name': { type: 'string' },
        'health-probe-bind-address': { type: 'string' },
        'metrics-bind-address': { type: 'string' },
        'metrics-secure': { type: 'boolean' },
        'metrics-cert-dir': { type: 'string' },
      },
    }));
  } catch (err) {
    throw new FlagError(`${(err as Error).message}; see --help`);
  }
  const str = (k: string) => values[k] as string | undefined;
  const sourceNamespaces = (str('source-namespaces') ?? defaultSourceNamespace(env))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (sourceNamespaces.length === 0)
    throw new FlagError('--source-namespaces must name at least one namespace');
  for (const ns of sourceNamespaces) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns) || ns.length > 63) {
      throw new FlagError(`--source-namespaces: "${ns}" is not a valid namespace name`);
    }
  }
  const concurrency = Number(str('concurrency') ?? '32');
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024) {
    throw new FlagError(`--concurrency must be an integer from 1 to 1024, got "${str('concurrency')}"`);
  }
  const logLevel = (str('log-level') ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel))
    throw new FlagError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const duration = (flag: string, fallback: string) => {
    try {
      return parseDuration(str(flag) ?? fallback);
    } catch (err) {
      throw new FlagError(`--${flag}: ${(err as Error).message}`);
    }
  };
  const resyncPeriodMs = duration('resync-period', '10m');
  const stallAfterMs = duration('stall-after', '2m');
  const leaseDurationMs = duration('leader-elect-lease-duration', '15s');
  const renewDeadlineMs = duration('leader-elect-renew-deadline', '10s');
  const retryPeriodMs = duration('leader-elect-retry-period', '2s');
  if (!(leaseDurationMs > renewDeadlineMs && renewDeadlineMs > retryPeriodMs && retryPeriodMs > 0)) {
    throw new FlagError('leader election needs lease duration > renew deadline > retry period > 0');
  }
  return {
    help: Boolean(values.help),
    kubeconfig: str('kubeconfig'),
    sourceNamespaces: [...new Set(sourceNamespaces)],
    concurrency,
    logLevel,
    resyncPeriodMs,
    stallAfterMs,
    leaderElect: Boolean(values['leader-elect']),
    leaseDurationMs,
    renewDeadlineMs,
    retryPeriodMs,
    leaseNamespace: str('leader-elect-resource-namespace') ?? defaultSourceNamespace(env),
    leaseName: str('leader-elect-resource-name') ?? 'regcred',
    healthProbeBindAddress: str('health-probe-bind-address') ?? ':8081',
    metricsBindAddress: str('metrics-bind-address') ?? '0',
    metricsSecure: Boolean(values['metrics-secure']),
    metricsCertDir: str('metrics-cert-dir'),
  };
}
