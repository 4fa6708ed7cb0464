/**
 * regcred's entry point: the module `npm start` and the image run. It only wires things: flags,
 * kubeconfig, logger, health and metrics endpoints, the operator, leader election and signals.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { FlagError, HELP, parseFlags } from './flags.ts';
import { CrdMissingError, Operator } from './operator.ts';
import { serveMetrics, serveProbes } from './runtime/http.ts';
import { KubeClient } from './runtime/kube.ts';
import { LeaderElector } from './runtime/leader.ts';
import { createLogger, type Logger } from './runtime/logger.ts';
import { createMetrics } from './runtime/metrics.ts';

const IN_CLUSTER_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';
/** In-flight reconciles get this long after SIGTERM (the Pod's grace period is 30 s). */
const GRACEFUL_SHUTDOWN_MS = 20_000;

/**
 * Loads the kubeconfig like kubectl, but never falls back silently to http://localhost:8080
 * (client-node's loadFromDefault does when it finds nothing).
 */
function loadKubeConfig(
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
  const stopping = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const servers: Server[] = [];
  try {
    const { config, from } = loadKubeConfig(flags.kubeconfig);
    const client = new KubeClient(config);
    logger.info('starting', {
      server: client.server,
      kubeconfig: from,
      sourceNamespaces: flags.sourceNamespaces,
      concurrency: flags.concurrency,
      resyncPeriodMs: flags.resyncPeriodMs,
      leaderElect: flags.leaderElect,
    });
    const metrics = createMetrics({ prefix: 'regcred' });
    const operator = new Operator({ client, logger, metrics, ...flags });
    const probes = await serveProbes(flags.healthProbeBindAddress, { ready: () => operator.cachesSynced });
    const scrape = await serveMetrics(flags.metricsBindAddress, {
      registry: metrics.registry,
      secure: flags.metricsSecure,
      certDir: flags.metricsCertDir,
      certName: 'regcred-metrics',
      client,
      logger,
    });
    for (const s of [probes, scrape]) if (s) servers.push(s.server);
    logger.info('serving', {
      healthProbes: probes?.address ?? 'off',
      metrics: scrape ? `${flags.metricsSecure ? 'https' : 'http'}://${scrape.address}/metrics` : 'off',
    });

    const first = await Promise.race([operator.startCaches().then(() => 'synced'), stopping]);
    if (first !== 'synced') return await shutdown(operator, undefined, first, logger, servers);

    const lease = `${flags.leaseNamespace}/${flags.leaseName}`;
    if (!flags.leaderElect) {
      metrics.leader.set({ name: lease }, 1);
      operator.startWorkers();
      logger.info('running');
      return await shutdown(operator, undefined, await stopping, logger, servers);
    }
    const elector = new LeaderElector({
      client,
      logger,
      namespace: flags.leaseNamespace,
      name: flags.leaseName,
      identity: `${hostname()}_${randomUUID()}`,
      leaseDurationMs: flags.leaseDurationMs,
      renewDeadlineMs: flags.renewDeadlineMs,
      retryPeriodMs: flags.retryPeriodMs,
    });
    // No write leaves this process unless it holds the lease right now (see LeaderElector.holds).
    client.fence = () => (elector.holds() ? undefined : 'this replica does not hold the lease');
    metrics.leader.set({ name: lease }, 0);
    logger.info('running as a candidate for leadership', { lease });
    const campaign = new AbortController();
    const election = elector.run(campaign.signal, () => {
      metrics.leader.set({ name: lease }, 1);
      operator.startWorkers();
    });
    const outcome = await Promise.race([election, stopping]);
    if (outcome === 'lost') {
      // Another replica may lead already: stop writing at once (no graceful stop, which would let
      // in-flight writes finish) and let the Deployment restart this one.
      process.exit(1);
    }
    campaign.abort();
    await election;
    return await shutdown(operator, elector, outcome, logger, servers);
  } catch (err) {
    for (const s of servers) s.close();
    if (err instanceof CrdMissingError) {
      logger.error(err.message);
      return 3;
    }
    logger.error('fatal', { error: err instanceof Error ? err.message : String(err) });
    return 1;
  }
}

/** Stops taking work, finishes in-flight reconciles (or abandons them after the grace period), then gives up the lease. */
async function shutdown(
  operator: Operator,
  elector: LeaderElector | undefined,
  signal: string,
  logger: Logger,
  servers: Server[],
): Promise<number> {
  logger.info('stopping', { signal });
  await operator.stop(GRACEFUL_SHUTDOWN_MS);
  await elector?.release();
  for (const s of servers) s.close();
  logger.info('stopped');
  return 0;
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
