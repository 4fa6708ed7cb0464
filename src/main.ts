/**
 * regcred's entry point: the module `npm start` and the image run. It only wires things: flags,
 * kubeconfig, logger, the operator, and signals.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { FlagError, HELP, parseFlags } from './flags.ts';
import { CrdMissingError, Operator } from './operator.ts';
import { KubeClient } from './runtime/kube.ts';
import { createLogger } from './runtime/logger.ts';

const IN_CLUSTER_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Loads the kubeconfig like kubectl, but never falls back silently to http://localhost:8080
 * (client-node's loadFromDefault does when it finds nothing).
 */
export function loadKubeConfig(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): { config: KubeConfig; from: string } {
  const config = new KubeConfig();
  if (flag) {
    if (!existsSync(flag)) throw new Error(`--kubeconfig ${flag} does not exist`);
    config.loadFromFile(flag);
    return { config, from: flag };
  }
  if (env.KUBECONFIG) {
    const files = env.KUBECONFIG.split(':').filter((f) => f && existsSync(f));
    if (files.length === 0) throw new Error(`KUBECONFIG=${env.KUBECONFIG} names no existing file`);
    config.loadFromDefault();
    return { config, from: `KUBECONFIG=${env.KUBECONFIG}` };
  }
  const home = join(homedir(), '.kube', 'config');
  if (existsSync(home)) {
    config.loadFromFile(home);
    return { config, from: home };
  }
  if (env.KUBERNETES_SERVICE_HOST && existsSync(IN_CLUSTER_TOKEN)) {
    config.loadFromCluster();
    return { config, from: 'in-cluster ServiceAccount' };
  }
  throw new Error(
    'no Kubernetes configuration: set KUBECONFIG, pass --kubeconfig, create ~/.kube/config, or run in a cluster',
  );
}

async function main(): Promise<number> {
  let flags: ReturnType<typeof parseFlags>;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`regcred: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (flags.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const logger = createLogger(flags.logLevel);
  let operator: Operator;
  try {
    const { config, from } = loadKubeConfig(flags.kubeconfig);
    const client = new KubeClient(config);
    logger.info('starting', {
      server: client.server,
      kubeconfig: from,
      sourceNamespaces: flags.sourceNamespaces,
      concurrency: flags.concurrency,
      resyncPeriodMs: flags.resyncPeriodMs,
    });
    operator = new Operator({ client, logger, ...flags });
    const stopping = new Promise<string>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
    const started = operator.start().then(() => 'started');
    const first = await Promise.race([started, stopping]);
    if (first === 'started') logger.info('running');
    const signal = first === 'started' ? await stopping : first;
    logger.info('stopping', { signal });
    await operator.stop();
    logger.info('stopped');
    return 0;
  } catch (err) {
    if (err instanceof CrdMissingError) {
      logger.error(err.message);
      return 3;
    }
    logger.error('fatal', { error: err instanceof Error ? err.message : String(err) });
    return 1;
  }
}

process.on('unhandledRejection', (reason) => {
  process.stderr.write(`regcred: unhandled rejection: ${String(reason)}\n`);
});

if (import.meta.main) {
  const code = await main();
  process.exitCode = code;
  // Keep-alive sockets may hold the loop open after a clean stop; leave anyway, shortly.
  setTimeout(() => process.exit(code), 200).unref();
}
