/**
 * Command-line flags of the operator. Every flag is listed by `--help`; bad values are reported
 * with the flag's name and what it accepts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { LOG_LEVELS, type LogLevel } from './runtime/logger.ts';

export const IN_CLUSTER_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export interface Flags {
  help: boolean;
  kubeconfig: string | undefined;
  sourceNamespaces: string[];
  concurrency: number;
  logLevel: LogLevel;
  resyncPeriodMs: number;
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
  --log-level=L             error, warn, info or debug (default info). Logs are JSON on stderr.
  --kubeconfig=PATH         Kubeconfig to use. Default: $KUBECONFIG, else ~/.kube/config, else the
                            in-cluster ServiceAccount. With none of them, regcred exits.
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
  let resyncPeriodMs: number;
  try {
    resyncPeriodMs = parseDuration(str('resync-period') ?? '10m');
  } catch (err) {
    throw new FlagError(`--resync-period: ${(err as Error).message}`);
  }
  return {
    help: Boolean(values.help),
    kubeconfig: str('kubeconfig'),
    sourceNamespaces: [...new Set(sourceNamespaces)],
    concurrency,
    logLevel,
    resyncPeriodMs,
  };
}
