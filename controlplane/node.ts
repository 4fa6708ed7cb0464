/**
 * A real local node joined to a `ControlPlane`: containerd 2.x with runc and the CNI bridge
 * plugin, kubelet (its own client certificate, `system:node:<name>` in `system:nodes`, bound to
 * ClusterRole `system:node`), kube-scheduler, kube-proxy (nftables mode, so the `kubernetes`
 * Service routes from Pods to kube-apiserver on the bridge address) and the private registry.
 *
 * Guarantees:
 * - `startNode` resolves only when the node is Ready and schedulable (node-lifecycle removed the
 *   not-ready taint) and kube-proxy has synced its rules.
 * - Everything it runs and writes names `NODE_ROOT`, so `nodehost.ts` finds and removes it after a
 *   crash; `stop()` stops the components in order and then runs that same cleanup.
 *
 * Errors: a `ControlPlaneError` naming the component and its log.
 */
import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import type { NodeBinaries } from './nodebinaries.ts';
import { BRIDGE, BRIDGE_ADDRESS, NODE_ROOT, POD_SUBNET } from './nodehost.ts';
import type { KeyPair } from './pki.ts';
import { Component } from './process.ts';
import { Registry } from './registry.ts';

const run = promisify(execFile);

export const NODE_NAME = 'regcred-node';
export const SERVICE_IP = '10.0.0.1';
export const PAUSE_IMAGE = 'regcred.local/pause:1';
export const KUBECTL_IMAGE = 'regcred.local/kubectl:1';

/** containerd's configuration (version 4, every path private except the fixed ones); pure. */
export function containerdConfig(o: {
  root: string;
  binaries: Pick<NodeBinaries, 'runc' | 'cniDir'>;
  cniConfDir: string;
  certsDir: string;
}): string {
  const q = (s: string) => `'${s}'`;
  return `version = 4
root = ${q(join(o.root, 'root'))}
state = ${q(join(o.root, 'state'))}
imports = []
disabled_plugins = ['io.containerd.nri.v1.nri']

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = ${q(join(o.root, 'containerd.sock'))}
  [plugins.'io.containerd.server.v1.ttrpc']
    address = ${q(join(o.root, 'containerd.sock.ttrpc'))}
  [plugins.'io.containerd.internal.v1.opt']
    path = ${q(join(o.root, 'opt'))}
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = ${q(join(o.root, 'image-verifier'))}
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = ${q(PAUSE_IMAGE)}
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = ${q(o.certsDir)}
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []
    enable_selinux = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = ${q(o.binaries.runc)}
          Root = ${q(join(o.root, 'runc'))}
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [${q(o.binaries.cniDir)}]
      conf_dir = ${q(o.cniConfDir)}
      max_conf_num = 1
      use_internal_loopback = true
`;
}

/** The CNI network: the bridge made before kube-apiserver started, no masquerading, no forwarding. */
export function cniConfig(ipamDir: string): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'regcred',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: false,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: ipamDir,
            ranges: [[{ subnet: POD_SUBNET, gateway: BRIDGE_ADDRESS, rangeStart: '10.201.0.10' }]],
            routes: [{ dst: '0.0.0.0/0', gw: BRIDGE_ADDRESS }],
          },
        },
      ],
    },
    null,
    2,
  );
}

export function kubeletConfig(o: {
  caPath: string;
  root: string;
  certPath: string;
  keyPath: string;
}): string {
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      failSwapOn: false,
      address: BRIDGE_ADDRESS,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      tlsCertFile: o.certPath,
      tlsPrivateKeyFile: o.keyPath,
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: false },
        x509: { clientCAFile: o.caPath },
      },
      authorization: { mode: 'AlwaysAllow' },
      containerRuntimeEndpoint: `unix://${join(o.root, 'containerd', 'containerd.sock')}`,
      podLogsDir: join(o.root, 'pod-logs'),
      clusterDomain: 'cluster.local',
      rotateCertificates: false,
      serializeImagePulls: false,
      imageMinimumGCAge: '24h',
      evictionHard: { 'memory.available': '100Mi' },
      nodeStatusUpdateFrequency: '2s',
    },
    null,
    2,
  );
}

export function kubeProxyConfig(kubeconfig: string): string {
  return JSON.stringify(
    {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'nftables',
      clientConnection: { kubeconfig },
      hostnameOverride: NODE_NAME,
      bindAddress: BRIDGE_ADDRESS,
      healthzBindAddress: '127.0.0.1:10256',
      metricsBindAddress: '127.0.0.1:10249',
      clusterCIDR: POD_SUBNET,
      nodePortAddresses: [POD_SUBNET],
      // Leave the kernel's conntrack settings as they are (the machine is shared).
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    },
    null,
    2,
  );
}

export interface NodeContext {
  binaries: NodeBinaries;
  server: string;
  caPath: string;
  ca: KeyPair;
  kubeConfig: KubeConfig;
  issue(
    name: string,
    commonName: string,
    organizations: string[],
    usage: 'serverAuth' | 'clientAuth',
    sans?: string[],
  ): Promise<{ certPath: string; keyPath: string; cert: string; key: string }>;
  writeKubeconfig(path: string, user: string, cert: string, key: string): Promise<string>;
  get(path: string): Promise<{ status: number; body: string }>;
  freePort(): Promise<number>;
  timeoutMs: number;
}

export class Node {
  readonly name = NODE_NAME;
  readonly registry: Registry;
  readonly logsDir: string;
  private readonly components: Component[];
  private stopped = false;
  private readonly ctrPath: string;

  private constructor(registry: Registry, components: Component[], logsDir: string, ctrPath: string) {
    this.ctrPath = ctrPath;
    this.registry = registry;
    this.components = components;
    this.logsDir = logsDir;
  }

  get pids(): Record<string, number> {
    const pids: Record<string, number> = {};
    for (const c of this.components) if (c.pid) pids[c.name] = c.pid;
    for (const [i, pid] of this.registry.pids.entries()) pids[`registry-${i}`] = pid;
    return pids;
  }

  /** Components that exited without being stopped. */
  async failures(): Promise<string[]> {
    const failed = this.components.filter((c) => c.unexpectedExit);
    return Promise.all(failed.map(async (c) => (await c.exitError('exited unexpectedly')).message));
  }

  static async start(ctx: NodeContext): Promise<Node> {
    const root = NODE_ROOT;
    const logsDir = join(root, 'logs');
    const pki = join(root, 'pki');
    const bin = join(root, 'bin');
    for (const d of [logsDir, pki, bin, join(root, 'cni', 'net.d'), join(root, 'certs.d')])
      await mkdir(d, { recursive: true });
    const env = { PATH: `${bin}:${ctx.binaries.binDir}:${process.env.PATH ?? '/usr/bin:/bin'}` };
    // kube-proxy runs `nft` from PATH; Debian's needs its two libraries from the cache.
    await writeFile(
      join(bin, 'nft'),
      `#!/bin/sh\nLD_LIBRARY_PATH='${ctx.binaries.nftLibDir}' exec '${ctx.binaries.nft}' "$@"\n`,
    );
    await chmod(join(bin, 'nft'), 0o755);

    const components: Component[] = [];
    let registry: Registry | undefined;
    const fail = async (err: unknown): Promise<never> => {
      for (const c of [...components].reverse()) await c.stop().catch(() => {});
      await registry?.stop().catch(() => {});
      throw err;
    };
    try {
      // The registry, and the images the node needs.
      const serving = await ctx.issue('registry', 'regcred-registry', [], 'serverAuth', [
        'IP:127.0.0.1',
        'DNS:localhost',
        `IP:${BRIDGE_ADDRESS}`,
      ]);
      registry = await Registry.start({
        dir: join(root, 'registry'),
        logsDir,
        port: await ctx.freePort(),
        publicPort: await ctx.freePort(),
        bridgeAddress: BRIDGE_ADDRESS,
        binaries: ctx.binaries,
        caPath: ctx.caPath,
        certPath: serving.certPath,
        keyPath: serving.keyPath,
        timeoutMs: ctx.timeoutMs,
      });
      for (const host of registry.hosts) {
        const hostDir = join(root, 'certs.d', host);
        await mkdir(hostDir, { recursive: true });
        await writeFile(
          join(hostDir, 'hosts.toml'),
          `server = 'https://${host}'\n\n[host.'https://${host}']\n  capabilities = ['pull', 'resolve']\n  ca = '${ctx.caPath}'\n`,
        );
      }

      const containerdDir = join(root, 'containerd');
      await mkdir(containerdDir, { recursive: true });
      await writeFile(
        join(containerdDir, 'config.toml'),
        containerdConfig({
          root: containerdDir,
          binaries: ctx.binaries,
          cniConfDir: join(root, 'cni', 'net.d'),
          certsDir: join(root, 'certs.d'),
        }),
      );
      await writeFile(
        join(root, 'cni', 'net.d', '10-regcred.conflist'),
        cniConfig(join(root, 'cni', 'ipam')),
      );
      const containerd = new Component(
        'containerd',
        ctx.binaries.containerd,
        ['--config', join(containerdDir, 'config.toml')],
        join(logsDir, 'containerd.log'),
        env,
      );
      components.push(containerd);
      containerd.start();
      const sock = join(containerdDir, 'containerd.sock');
      const ctr = (args: string[]) => run(ctx.binaries.ctr, ['--address', sock, '-n', 'k8s.io', ...args]);
      await containerd.waitUntil(
        'ctr version answers',
        async () => {
          await ctr(['version']);
          return true;
        },
        ctx.timeoutMs,
      );

      // The pause and kubectl images go straight into containerd; the private test image never does.
      const images = join(root, 'images');
      await mkdir(images, { recursive: true });
      await busyboxRootfs(ctx.binaries.busybox, join(images, 'busybox-rootfs'));
      const pause = await registry.pushImage({
        repository: 'regcred/pause',
        tag: '1',
        rootfs: join(images, 'busybox-rootfs'),
        entrypoint: ['/bin/busybox', 'sleep', '2147483647'],
      });
      await mkdir(join(images, 'kubectl-rootfs', 'bin'), { recursive: true });
      await cp(join(ctx.binaries.binDir, 'kubectl'), join(images, 'kubectl-rootfs', 'bin', 'kubectl'));
      const kubectl = await registry.pushImage({
        repository: 'regcred/kubectl',
        tag: '1',
        rootfs: join(images, 'kubectl-rootfs'),
        entrypoint: ['/bin/kubectl'],
      });
      for (const [ref, name] of [
        [pause, PAUSE_IMAGE],
        [kubectl, KUBECTL_IMAGE],
      ] as const) {
        const tar = join(images, `${name.split('/')[1]?.replace(':', '-')}.tar`);
        await registry.saveImage(ref, tar);
        await ctr(['images', 'import', '--platform', 'linux/amd64', tar]);
        await ctr(['images', 'tag', '--force', ref, name]);
        await ctr(['images', 'rm', ref]);
      }

      // Identities.
      const kubeletClient = await ctx.issue(
        'kubelet-client',
        `system:node:${NODE_NAME}`,
        ['system:nodes'],
        'clientAuth',
      );
      const kubeletServing = await ctx.issue('kubelet-serving', NODE_NAME, [], 'serverAuth', [
        `IP:${BRIDGE_ADDRESS}`,
        `DNS:${NODE_NAME}`,
      ]);
      const scheduler = await ctx.issue('kube-scheduler', 'system:kube-scheduler', [], 'clientAuth');
      const proxy = await ctx.issue('kube-proxy', 'system:kube-proxy', [], 'clientAuth');
      const kubeletKubeconfig = await ctx.writeKubeconfig(
        join(root, 'kubelet.kubeconfig'),
        `system:node:${NODE_NAME}`,
        kubeletClient.cert,
        kubeletClient.key,
      );
      const schedulerKubeconfig = await ctx.writeKubeconfig(
        join(root, 'scheduler.kubeconfig'),
        'system:kube-scheduler',
        scheduler.cert,
        scheduler.key,
      );
      const proxyKubeconfig = await ctx.writeKubeconfig(
        join(root, 'proxy.kubeconfig'),
        'system:kube-proxy',
        proxy.cert,
        proxy.key,
      );

      await writeFile(
        join(root, 'kubelet.json'),
        kubeletConfig({
          caPath: ctx.caPath,
          root,
          certPath: kubeletServing.certPath,
          keyPath: kubeletServing.keyPath,
        }),
      );
      const kubelet = new Component(
        'kubelet',
        ctx.binaries.kubelet,
        [
          `--config=${join(root, 'kubelet.json')}`,
          `--kubeconfig=${kubeletKubeconfig}`,
          `--root-dir=${join(root, 'kubelet')}`,
          `--cert-dir=${join(root, 'kubelet-pki')}`,
          `--hostname-override=${NODE_NAME}`,
          `--node-ip=${BRIDGE_ADDRESS}`,
          '--v=2',
        ],
        join(logsDir, 'kubelet.log'),
        env,
      );
      components.push(kubelet);
      kubelet.start();

      const kubeScheduler = new Component(
        'kube-scheduler',
        ctx.binaries.kubeScheduler,
        [`--kubeconfig=${schedulerKubeconfig}`, '--leader-elect=false', '--secure-port=0'],
        join(logsDir, 'kube-scheduler.log'),
        env,
      );
      components.push(kubeScheduler);
      kubeScheduler.start();

      await writeFile(join(root, 'kube-proxy.json'), kubeProxyConfig(proxyKubeconfig));
      const kubeProxy = new Component(
        'kube-proxy',
        ctx.binaries.kubeProxy,
        [`--config=${join(root, 'kube-proxy.json')}`],
        join(logsDir, 'kube-proxy.log'),
        env,
      );
      components.push(kubeProxy);
      kubeProxy.start();

      await kubelet.waitUntil(
        `node ${NODE_NAME} is Ready without the not-ready taint`,
        async () => {
          const res = await ctx.get(`/api/v1/nodes/${NODE_NAME}`);
          if (res.status !== 200) return false;
          const node = JSON.parse(res.body);
          const ready = node.status?.conditions?.some(
            (c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True',
          );
          const tainted = (node.spec?.taints ?? []).some((t: { key: string }) =>
            t.key.startsWith('node.kubernetes.io/'),
          );
          return ready && !tainted;
        },
        ctx.timeoutMs,
      );
      await kubeProxy.waitUntil(
        'healthz answers 200 (rules synced)',
        async () => (await localGet('http://127.0.0.1:10256/healthz')) === 200,
        ctx.timeoutMs,
      );
      await kubeScheduler.waitUntil('it is running', async () => true, ctx.timeoutMs);
      return new Node(registry, components, logsDir, ctx.binaries.ctr);
    } catch (err) {
      return fail(err);
    }
  }

  /** The image references containerd holds for Kubernetes (namespace `k8s.io`). */
  async images(): Promise<string[]> {
    const { stdout } = await run(this.ctrPath, [
      '--address',
      join(NODE_ROOT, 'containerd', 'containerd.sock'),
      '-n',
      'k8s.io',
      'images',
      'ls',
      '-q',
    ]);
    return stdout.split('\n').filter(Boolean);
  }

  /**
   * Builds a small private image (busybox as one layer, entrypoint `/bin/busybox`), pushes it to
   * the registry and returns its reference. It is never put into containerd: kubelet must pull it.
   */
  async pushPrivateImage(repository: string, tag: string): Promise<string> {
    return this.registry.pushImage({
      repository,
      tag,
      rootfs: join(NODE_ROOT, 'images', 'busybox-rootfs'),
      entrypoint: ['/bin/busybox'],
    });
  }

  /**
   * Stops every component and the registry; the control plane then gives the host back. With
   * `keepTo`, copies the logs there first.
   */
  async stop(keepTo?: string): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (keepTo) await cp(this.logsDir, keepTo, { recursive: true }).catch(() => {});
    const byName = new Map(this.components.map((c) => [c.name, c]));
    for (const name of ['kube-proxy', 'kube-scheduler', 'kubelet', 'containerd'])
      await byName.get(name)?.stop(5000);
    await this.registry.stop();
  }

  /** For process exit: kills every component at once; the next start cleans up the rest. */
  killNow(): void {
    for (const c of this.components) c.killNow();
  }
}

async function busyboxRootfs(busybox: string, dir: string): Promise<void> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  await cp(busybox, join(dir, 'bin', 'busybox'));
  for (const tool of ['sh', 'sleep', 'cat', 'echo', 'wget', 'ls']) {
    await run('ln', ['-sf', 'busybox', join(dir, 'bin', tool)]);
  }
}

function localGet(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}
