/**
 * A real local Kubernetes control plane: etcd, kube-apiserver (TLS, client certificates, RBAC,
 * ServiceAccount tokens and admission) and kube-controller-manager (ServiceAccounts, tokens,
 * namespace deletion, garbage collection, root CA publishing), on loopback and random free ports.
 *
 * Guarantees:
 * - `start()` resolves only when the cluster is really usable: `/readyz` answers 200, the `default`
 *   namespace can be read and the controller-manager has created `default/default`.
 * - `stop()` leaves no process and no temporary directory behind; logs are kept (and their path
 *   returned) when asked to, e.g. after a failure. Leftovers of an interrupted earlier run are
 *   cleaned up by the next `start()`.
 * - etcd and kube-apiserver can each be stopped and started again alone, keeping data and ports.
 *
 * Errors: every failure is a `ControlPlaneError` that names the cause and the log to read; start
 * never hangs (each wait has a deadline and stops early when a component exits).
 */

import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { type Binaries, resolveBinaries } from './binaries.ts';
import { ControlPlaneError } from './errors.ts';
import { cleanLeftovers, KEPT_LOGS_ROOT, WORK_ROOT, writeState } from './leftovers.ts';
import { NODE_NAME, Node, SERVICE_IP } from './node.ts';
import { type NodeBinaries, resolveNodeBinaries } from './nodebinaries.ts';
import { acquireHost, BRIDGE_ADDRESS, type HostLease, NODE_ROOT, nodePreflight } from './nodehost.ts';
import {
  createCertificateAuthority,
  createSigningKey,
  issueCertificate,
  type KeyPair,
  type Pem,
  readPem,
} from './pki.ts';
import { Component } from './process.ts';
import { formatDuration, type Progress, silentProgress } from './progress.ts';

export interface StartOptions {
  progress?: Progress;
  /** Use these binaries instead of resolving (and maybe building) them. */
  binaries?: Binaries;
  /** Deadline for each readiness wait. */
  readyTimeoutMs?: number;
  /**
   * kube-controller-manager's client rate limit (its default, as in real clusters, is 20 requests/s,
   * so new namespaces get their `default` ServiceAccount at about 20 a second). The benchmark
   * raises it to set up thousands of namespaces quickly.
   */
  controllerManagerQps?: number;
  /**
   * Users whose every request kube-apiserver records in its audit log (`auditLogPath`), as JSON
   * lines at Metadata level; nobody else's. Lets a benchmark attribute requests to one client.
   */
  auditUsers?: string[];
  /**
   * Also start the machine's one local node (containerd, kubelet, kube-scheduler, kube-proxy) and
   * its private registry; kube-apiserver then listens on the node's bridge address instead of
   * 127.0.0.1 (so Pods reach it through the `kubernetes` Service) and the controller-manager adds
   * the workload controllers. Start resolves when the node is Ready and schedulable.
   */
  node?: boolean;
  /** How long to wait for another run's node to stop (default 10 min). */
  nodeLockWaitMs?: number;
}

export interface ClientConfig {
  /** A kubeconfig file (JSON, which kubectl and client libraries read as YAML). */
  path: string;
  kubeConfig: KubeConfig;
}

export interface Ports {
  etcdClient: number;
  etcdPeer: number;
  apiserver: number;
}

const CONTROLLERS = 'serviceaccount,serviceaccount-token,namespace,garbagecollector,root-ca-cert-publisher';
/** Added with a node, so that Deployments, PodDisruptionBudgets and node taints work. */
const NODE_CONTROLLERS = 'deployment,replicaset,nodelifecycle,disruption,podgc';

/** The controller-manager's `--controllers`; pure, for tests. */
export function controllersFor(node: boolean): string {
  return node ? `${CONTROLLERS},${NODE_CONTROLLERS}` : CONTROLLERS;
}

export class ControlPlane {
  readonly dir: string;
  readonly logsDir: string;
  readonly binaries: Binaries;
  readonly server: string;
  readonly ports: Ports;
  /** Where kube-apiserver writes its audit log (only with `auditUsers`). */
  get auditLogPath(): string {
    return join(this.dir, 'audit.log');
  }

  /** The admin kubeconfig (user `admin`, group `system:masters`). */
  readonly admin: ClientConfig;
  private readonly ca: KeyPair;
  private readonly adminPem: Pem;
  private readonly caPem: string;
  private readonly etcd: Component;
  private readonly apiserver: Component;
  private readonly controllerManager: Component;
  private readonly readyTimeoutMs: number;
  private lease: HostLease | undefined;
  /** The local node (with `node: true`). */
  node: Node | undefined;
  private clientCount = 0;
  private readonly tracked = new Map<string, number>();
  private stopped = false;

  private constructor(init: {
    dir: string;
    logsDir: string;
    binaries: Binaries;
    ports: Ports;
    server: string;
    ca: KeyPair;
    caPem: string;
    adminPem: Pem;
    admin: ClientConfig;
    components: { etcd: Component; apiserver: Component; controllerManager: Component };
    readyTimeoutMs: number;
  }) {
    this.dir = init.dir;
    this.logsDir = init.logsDir;
    this.binaries = init.binaries;
    this.ports = init.ports;
    this.server = init.server;
    this.ca = init.ca;
    this.caPem = init.caPem;
    this.adminPem = init.adminPem;
    this.admin = init.admin;
    this.etcd = init.components.etcd;
    this.apiserver = init.components.apiserver;
    this.controllerManager = init.components.controllerManager;
    this.readyTimeoutMs = init.readyTimeoutMs;
  }

  static async start(options: StartOptions = {}): Promise<ControlPlane> {
    const progress = options.progress ?? silentProgress;
    const started = Date.now();
    const cleaned = await cleanLeftovers();
    if (cleaned > 0) progress.note(`cleaned up ${cleaned} control plane(s) left by interrupted runs`);
    const binaries = options.binaries ?? (await resolveBinaries({ progress }));
    let nodeBinaries: NodeBinaries | undefined;
    let lease: HostLease | undefined;
    if (options.node) {
      const cause = await nodePreflight();
      if (cause) throw new ControlPlaneError(`no local node: ${cause}`);
      nodeBinaries = await resolveNodeBinaries({ progress });
    }
    const host = options.node ? BRIDGE_ADDRESS : '127.0.0.1';

    const id = `${process.pid}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const dir = join(WORK_ROOT, id);
    const logsDir = join(dir, 'logs');
    const pki = join(dir, 'pki');
    await mkdir(logsDir, { recursive: true });
    await mkdir(pki);
    await mkdir(join(dir, 'etcd'), { mode: 0o700 });
    await writeState(dir, { owner: process.pid, components: {} });

    if (options.auditUsers?.length) {
      const policy = {
        apiVersion: 'audit.k8s.io/v1',
        kind: 'Policy',
        omitStages: ['RequestReceived'],
        rules: [{ level: 'Metadata', users: options.auditUsers }, { level: 'None' }],
      };
      await writeFile(join(dir, 'audit-policy.yaml'), JSON.stringify(policy));
    }
    const ports = await freePorts();
    const server = `https://${host}:${ports.apiserver}`;
    const ca = await createCertificateAuthority(pki);
    const [serving, adminPair, signing, kubeletClient] = await Promise.all([
      issueCertificate(ca, pki, {
        name: 'apiserver',
        commonName: 'kube-apiserver',
        usage: 'serverAuth',
        subjectAltNames: [
          'IP:127.0.0.1',
          'DNS:localhost',
          ...(options.node
            ? [
                `IP:${BRIDGE_ADDRESS}`,
                `IP:${SERVICE_IP}`,
                'DNS:kubernetes',
                'DNS:kubernetes.default',
                'DNS:kubernetes.default.svc',
                'DNS:kubernetes.default.svc.cluster.local',
              ]
            : []),
        ],
      }),
      issueCertificate(ca, pki, {
        name: 'admin',
        commonName: 'admin',
        organizations: ['system:masters'],
        usage: 'clientAuth',
      }),
      createSigningKey(pki),
      issueCertificate(ca, pki, {
        name: 'apiserver-kubelet-client',
        commonName: 'kube-apiserver-kubelet-client',
        usage: 'clientAuth',
      }),
    ]);
    const caPem = (await readPem({ certPath: ca.certPath, keyPath: ca.keyPath })).cert;
    const adminPem = await readPem(adminPair);
    const admin = await writeClientConfig(join(dir, 'admin.kubeconfig'), server, caPem, 'admin', {
      'client-certificate-data': b64(adminPem.cert),
      'client-key-data': b64(adminPem.key),
    });

    const etcd = new Component(
      'etcd',
      binaries.etcd,
      [
        '--name=regcred',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${ports.etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${ports.etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${ports.etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${ports.etcdPeer}`,
        `--initial-cluster=regcred=http://127.0.0.1:${ports.etcdPeer}`,
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      join(logsDir, 'etcd.log'),
    );
    const apiserver = new Component(
      'kube-apiserver',
      binaries.kubeApiserver,
      [
        `--etcd-servers=http://127.0.0.1:${ports.etcdClient}`,
        `--bind-address=${host}`,
        `--secure-port=${ports.apiserver}`,
        `--advertise-address=${host}`,
        // With a node the `kubernetes` endpoints name the bridge address, as Pods need.
        ...(options.node
          ? [
              `--kubelet-client-certificate=${kubeletClient.certPath}`,
              `--kubelet-client-key=${kubeletClient.keyPath}`,
              '--kubelet-preferred-address-types=InternalIP',
            ]
          : ['--endpoint-reconciler-type=none']),
        `--cert-dir=${join(dir, 'apiserver-certs')}`,
        `--tls-cert-file=${serving.certPath}`,
        `--tls-private-key-file=${serving.keyPath}`,
        `--client-ca-file=${ca.certPath}`,
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${signing.publicPath}`,
        `--service-account-signing-key-file=${signing.privatePath}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--authorization-mode=RBAC',
        '--allow-privileged=true',
        ...(options.auditUsers?.length
          ? [
              `--audit-policy-file=${join(dir, 'audit-policy.yaml')}`,
              `--audit-log-path=${join(dir, 'audit.log')}`,
              '--audit-log-format=json',
              '--audit-log-mode=blocking',
            ]
          : []),
      ],
      join(logsDir, 'kube-apiserver.log'),
    );
    const controllerManager = new Component(
      'kube-controller-manager',
      binaries.kubeControllerManager,
      [
        `--kubeconfig=${admin.path}`,
        `--controllers=${controllersFor(options.node === true)}`,
        ...(options.node ? ['--node-monitor-period=1s'] : []),
        `--service-account-private-key-file=${signing.privatePath}`,
        `--root-ca-file=${ca.certPath}`,
        // Each controller acts as its own ServiceAccount in kube-system, as in kubeadm's clusters
        // (policies that exempt the garbage collector or the namespace controller see them so).
        '--use-service-account-credentials',
        '--leader-elect=false',
        '--secure-port=0',
        ...(options.controllerManagerQps
          ? [
              `--kube-api-qps=${options.controllerManagerQps}`,
              `--kube-api-burst=${options.controllerManagerQps * 2}`,
            ]
          : []),
      ],
      join(logsDir, 'kube-controller-manager.log'),
    );

    // The bridge must exist before kube-apiserver binds its address; the lease goes to the plane
    // at once, so that every failure from here on is cleaned up by its stop().
    if (nodeBinaries) {
      try {
        lease = await acquireHost(nodeBinaries, progress, options.nodeLockWaitMs ?? 10 * 60_000);
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
    }
    const plane = new ControlPlane({
      dir,
      logsDir,
      binaries,
      ports,
      server,
      ca,
      caPem,
      adminPem,
      admin,
      components: { etcd, apiserver, controllerManager },
      readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
    });
    plane.lease = lease;
    try {
      await plane.startEtcd();
      await plane.startApiserver();
      controllerManager.start();
      await plane.recordState();
      await controllerManager.waitUntil(
        'the default ServiceAccount exists',
        async () => (await plane.get('/api/v1/namespaces/default/serviceaccounts/default')).status === 200,
        plane.readyTimeoutMs,
      );
      if (nodeBinaries && lease) {
        const nodeStarted = Date.now();
        await plane.startNode(nodeBinaries, ca, pki);
        progress.note(`node ${NODE_NAME} Ready in ${formatDuration(Date.now() - nodeStarted)}`);
      }
    } catch (err) {
      const kept = await plane.stop({ keepLogs: true });
      const message = err instanceof Error ? err.message : String(err);
      throw new ControlPlaneError(
        `${message}${kept ? ` (logs kept in ${kept})` : ''}`.replaceAll(logsDir, kept ?? logsDir),
      );
    }
    progress.note(`control plane ready at ${server} in ${formatDuration(Date.now() - started)}`);
    return plane;
  }

  private async startNode(binaries: NodeBinaries, ca: KeyPair, pki: string): Promise<void> {
    const rbac = this.admin.kubeConfig.makeApiClient(RbacAuthorizationV1Api);
    // Our kube-apiserver runs RBAC without the Node authorizer: bind the node's user to system:node.
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: 'regcred:node' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:node' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: `system:node:${NODE_NAME}` }],
      },
    });
    this.node = await Node.start({
      binaries,
      server: this.server,
      caPath: ca.certPath,
      ca,
      kubeConfig: this.admin.kubeConfig,
      issue: async (name, commonName, organizations, usage, sans) => {
        const pair = await issueCertificate(ca, pki, {
          name,
          commonName,
          organizations,
          usage,
          ...(sans ? { subjectAltNames: sans } : {}),
        });
        return { ...pair, ...(await readPem(pair)) };
      },
      writeKubeconfig: async (path, user, cert, key) =>
        (
          await writeClientConfig(path, this.server, this.caPem, user, {
            'client-certificate-data': b64(cert),
            'client-key-data': b64(key),
          })
        ).path,
      get: (path) => this.get(path),
      freePort,
      timeoutMs: this.readyTimeoutMs,
    });
    await this.recordState();
  }

  async startEtcd(): Promise<void> {
    this.etcd.start();
    await this.recordState();
    const url = `http://127.0.0.1:${this.ports.etcdClient}/health`;
    await this.etcd.waitUntil(
      'GET /health reports healthy',
      async () => {
        const res = await plainGet(url);
        return res.status === 200 && /"health":\s*"true"/.test(res.body);
      },
      this.readyTimeoutMs,
    );
  }

  async stopEtcd(): Promise<void> {
    await this.etcd.stop();
  }

  async startApiserver(): Promise<void> {
    this.apiserver.start();
    await this.recordState();
    await this.apiserver.waitUntil(
      '/readyz is 200 and the default namespace is readable',
      async () => {
        if ((await this.get('/readyz')).status !== 200) return false;
        return (await this.get('/api/v1/namespaces/default')).status === 200;
      },
      this.readyTimeoutMs,
    );
  }

  async stopApiserver(): Promise<void> {
    await this.apiserver.stop();
  }

  /**
   * Stops everything (controller-manager, apiserver, etcd) and removes the work directory.
   * With `keepLogs`, or when a component had died unexpectedly, the logs are moved to a folder that
   * stays, and its path is returned.
   */
  async stop(options: { keepLogs?: boolean } = {}): Promise<string | undefined> {
    if (this.stopped) return undefined;
    this.stopped = true;
    const crashed = [this.etcd, this.apiserver, this.controllerManager].some((c) => c.unexpectedExit);
    const keptName = `${new Date().toISOString().replaceAll(':', '')}-${this.dir.split('/').pop()}`;
    if (this.lease) {
      const nodeCrashed = ((await this.node?.failures()) ?? []).length > 0;
      if (options.keepLogs || crashed || nodeCrashed)
        await cp(join(NODE_ROOT, 'logs'), join(KEPT_LOGS_ROOT, `${keptName}-node`), {
          recursive: true,
        }).catch(() => {});
      await this.node?.stop();
    }
    await this.controllerManager.stop();
    await this.apiserver.stop();
    await this.etcd.stop();
    // The bridge goes last: kube-apiserver listens on its address until it has stopped.
    await this.lease?.release();
    let kept: string | undefined;
    if (options.keepLogs || crashed) {
      kept = join(KEPT_LOGS_ROOT, keptName);
      await cp(this.logsDir, kept, { recursive: true });
    }
    await rm(this.dir, { recursive: true, force: true });
    return kept;
  }

  /** For `process.on('exit')`: kills every component synchronously. The next start removes the directory. */
  killNow(): void {
    this.node?.killNow();
    for (const c of [this.controllerManager, this.apiserver, this.etcd]) c.killNow();
  }

  /** Components that exited without being stopped, with the reason; empty while all is well. */
  async failures(): Promise<string[]> {
    const failed = [this.etcd, this.apiserver, this.controllerManager].filter((c) => c.unexpectedExit);
    const own = await Promise.all(
      failed.map(async (c) => (await c.exitError('exited unexpectedly')).message),
    );
    return [...own, ...((await this.node?.failures()) ?? [])];
  }

  /** A kubeconfig authenticating with a client certificate for `user` in `groups`. */
  async userConfig(user: string, groups: readonly string[] = []): Promise<ClientConfig> {
    const name = `user-${++this.clientCount}`;
    const pair = await issueCertificate(this.ca, join(this.dir, 'pki'), {
      name,
      commonName: user,
      organizations: groups,
      usage: 'clientAuth',
    });
    const pem = await readPem(pair);
    return writeClientConfig(join(this.dir, `${name}.kubeconfig`), this.server, this.caPem, user, {
      'client-certificate-data': b64(pem.cert),
      'client-key-data': b64(pem.key),
    });
  }

  /** A kubeconfig with a TokenRequest token for the ServiceAccount `namespace/name`. */
  async serviceAccountConfig(
    namespace: string,
    name: string,
    expirationSeconds = 3600,
  ): Promise<ClientConfig> {
    const core = this.admin.kubeConfig.makeApiClient(CoreV1Api);
    const res = await core.createNamespacedServiceAccountToken({
      name,
      namespace,
      body: { spec: { audiences: [], expirationSeconds } },
    });
    const token = res.status?.token;
    if (!token) throw new ControlPlaneError(`TokenRequest for ${namespace}/${name} returned no token`);
    const path = join(this.dir, `sa-${++this.clientCount}.kubeconfig`);
    return writeClientConfig(path, this.server, this.caPem, `system:serviceaccount:${namespace}:${name}`, {
      token,
    });
  }

  /** A GET as admin, without client-node; for readiness and for `/metrics`. */
  get(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        `${this.server}${path}`,
        { ca: this.caPem, cert: this.adminPem.cert, key: this.adminPem.key, timeout: 5000 },
        (res) => collect(res, resolve),
      );
      req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
      req.on('error', reject);
      req.end();
    });
  }

  /**
   * Records a process that works against this control plane (e.g. an operator), so that the next
   * start kills it if this run dies without stopping it. It must run in its own process group and
   * name this control plane's directory in its command line or environment (e.g. KUBECONFIG).
   */
  async track(name: string, pid: number): Promise<void> {
    this.tracked.set(name, pid);
    await this.recordState();
  }

  private async recordState(): Promise<void> {
    const components: Record<string, number> = Object.fromEntries(this.tracked);
    for (const c of [this.etcd, this.apiserver, this.controllerManager])
      if (c.pid) components[c.name] = c.pid;
    await writeState(this.dir, { owner: process.pid, components });
  }
}

function b64(text: string): string {
  return Buffer.from(text).toString('base64');
}

async function writeClientConfig(
  path: string,
  server: string,
  caPem: string,
  user: string,
  credentials: Record<string, string>,
): Promise<ClientConfig> {
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'regcred-local', cluster: { server, 'certificate-authority-data': b64(caPem) } }],
    users: [{ name: user, user: credentials }],
    contexts: [{ name: 'regcred-local', context: { cluster: 'regcred-local', user } }],
    'current-context': 'regcred-local',
  };
  const text = `${JSON.stringify(config, null, 2)}\n`;
  await writeFile(path, text, { mode: 0o600 });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(text);
  return { path, kubeConfig };
}

function collect(
  res: import('node:http').IncomingMessage,
  resolve: (r: { status: number; body: string }) => void,
): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
}

function plainGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: 2000 }, (res) => collect(res, resolve));
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** One free loopback port. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (s.address() as import('node:net').AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Distinct free loopback ports, found by binding port 0; all held until all are known. */
async function freePorts(): Promise<Ports> {
  const servers = await Promise.all(
    [0, 1, 2].map(
      () =>
        new Promise<import('node:net').Server>((resolve, reject) => {
          const s = createServer();
          s.on('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  const [etcdClient, etcdPeer, apiserver] = ports as [number, number, number];
  return { etcdClient, etcdPeer, apiserver };
}
