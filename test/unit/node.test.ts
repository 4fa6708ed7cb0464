/**
 * The local node's pure parts: version pinning, the components' configuration, cleanup planning
 * and reading the registry's log.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { controllersFor } from '../../controlplane/controlplane.ts';
import { cniConfig, containerdConfig, kubeletConfig, kubeProxyConfig } from '../../controlplane/node.ts';
import {
  aptDownloadArgs,
  CONTAINERD_MODULE_DIR,
  DEBIAN_PACKAGES,
  debianPaths,
  NODE_COMPONENTS,
} from '../../controlplane/nodebinaries.ts';
import {
  BRIDGE,
  BRIDGE_ADDRESS,
  FIXED_HOST_PATHS,
  NODE_ROOT,
  type Observed,
  type Originals,
  planCleanup,
} from '../../controlplane/nodehost.ts';
import { parsePulls, registryConfig } from '../../controlplane/registry.ts';

function observed(over: Partial<Observed> = {}): Observed {
  return {
    mounts: ['/', '/proc', '/sys/fs/cgroup/memory'],
    cgroups: [],
    links: [{ name: 'lo' }, { name: 'eth0' }],
    nftTables: [],
    kernel: { 'vm/overcommit_memory': '0', 'kernel/panic': '1', 'kernel/panic_on_oops': '0' },
    existing: [],
    nodeRootExists: false,
    ...over,
  };
}

const originals: Originals = {
  bootId: 'b',
  kernel: { 'vm/overcommit_memory': '0', 'kernel/panic': '1', 'kernel/panic_on_oops': '0' },
  existed: Object.fromEntries(FIXED_HOST_PATHS.map((p) => [p, p === '/etc/cni'])),
  nftTables: [],
};

describe('local node: versions', () => {
  it('pins containerd 2.x and crane in the containerd module, kubelet in the Kubernetes module', async () => {
    const goMod = await readFile(join(CONTAINERD_MODULE_DIR, 'go.mod'), 'utf8');
    expect(goMod).to.match(/^\s+github\.com\/containerd\/containerd\/v2 v2\.4\.2\b/m);
    expect(goMod).to.match(/^\s+github\.com\/google\/go-containerregistry v0\.22\.1\b/m);
    const k8sMod = await readFile(join(CONTAINERD_MODULE_DIR, '..', 'k8s', 'go.mod'), 'utf8');
    for (const cmd of ['kubelet', 'kube-scheduler', 'kube-proxy'])
      expect(k8sMod).to.contain(`\tk8s.io/kubernetes/cmd/${cmd}\n`);
    // The control plane's dependencies are not raised by containerd's.
    expect(k8sMod).not.to.contain('containerd/containerd/v2');
    const names = NODE_COMPONENTS.map((c) => c.name);
    expect(names).to.include.members([
      'kubelet',
      'containerd',
      'containerd-shim-runc-v2',
      'crane',
      'htpasswd',
    ]);
  });

  it('downloads exactly the pinned Debian packages and finds their files in the unpacked root', () => {
    expect(aptDownloadArgs()).to.deep.equal([
      'download',
      ...Object.entries(DEBIAN_PACKAGES).map(([n, v]) => `${n}=${v}`),
    ]);
    expect(DEBIAN_PACKAGES.runc).to.equal('1.1.5+ds1-1+deb12u1');
    expect(debianPaths('/c').registry).to.equal('/c/usr/bin/docker-registry');
    expect(debianPaths('/c').cniDir).to.equal('/c/usr/lib/cni');
  });
});

describe('local node: configuration', () => {
  it('adds the workload controllers only with a node', () => {
    expect(controllersFor(false)).not.to.contain('deployment');
    expect(controllersFor(true).split(',')).to.include.members([
      'serviceaccount',
      'deployment',
      'replicaset',
      'nodelifecycle',
      'disruption',
      'podgc',
    ]);
  });

  it('keeps containerd on private paths, trusting registries through certs.d, without pull credentials', () => {
    const text = containerdConfig({
      root: '/n/containerd',
      binaries: { runc: '/c/runc', cniDir: '/c/cni' },
      cniConfDir: '/n/cni',
      certsDir: '/n/certs.d',
    });
    expect(text).to.match(/^version = 4$/m);
    expect(text).to.contain("address = '/n/containerd/containerd.sock'");
    expect(text).to.contain("config_path = '/n/certs.d'");
    expect(text).to.contain('restrict_oom_score_adj = true');
    expect(text).to.contain('netns_mounts_under_state_dir = true');
    expect(text).not.to.match(/auth|password/i);
    for (const line of text.split('\n').filter((l) => /'\//.test(l)))
      expect(line, line).to.match(/'\/(n|c)\//);
  });

  it('keeps Pod traffic on the bridge without forwarding or masquerading', () => {
    const cni = JSON.parse(cniConfig('/n/ipam'));
    expect(cni.plugins[0]).to.include({ bridge: BRIDGE, isGateway: false, ipMasq: false });
    expect(cni.plugins[0].ipam.routes).to.deep.equal([{ dst: '0.0.0.0/0', gw: BRIDGE_ADDRESS }]);
  });

  it('binds kubelet and kube-proxy to the bridge or loopback, never every interface', () => {
    const kubelet = JSON.parse(kubeletConfig({ caPath: '/ca', root: '/n', certPath: '/c', keyPath: '/k' }));
    expect(kubelet).to.include({
      address: BRIDGE_ADDRESS,
      healthzBindAddress: '127.0.0.1',
      failCgroupV1: false,
    });
    expect(kubelet.authentication.anonymous.enabled).to.equal(false);
    const proxy = JSON.parse(kubeProxyConfig('/p.kubeconfig'));
    expect(proxy.mode).to.equal('nftables');
    expect(proxy.healthzBindAddress).to.match(/^127\.0\.0\.1:/);
    expect(proxy.conntrack).to.deep.equal({
      maxPerCore: 0,
      min: 0,
      tcpEstablishedTimeout: '0s',
      tcpCloseWaitTimeout: '0s',
    });
  });

  it('serves the registry over TLS with htpasswd and a JSON log', () => {
    const config = JSON.parse(
      registryConfig({
        addr: '127.0.0.1:5000',
        dataDir: '/d',
        certPath: '/c',
        keyPath: '/k',
        htpasswdPath: '/h',
        eventsUrl: 'http://127.0.0.1:9/events',
      }),
    );
    expect(config.http).to.deep.equal({ addr: '127.0.0.1:5000', tls: { certificate: '/c', key: '/k' } });
    expect(config.auth).to.deep.equal({ htpasswd: { realm: 'regcred-local', path: '/h' } });
    expect(config.log.formatter).to.equal('json');
    expect(config.notifications.endpoints[0].url).to.equal('http://127.0.0.1:9/events');
    expect(config.notifications.endpoints[0].url).to.equal('http://127.0.0.1:9/events');
  });

  it('reads which user fetched which manifest from the pull log', () => {
    const manifest = 'application/vnd.oci.image.manifest.v1+json';
    const log = [
      'not json',
      JSON.stringify({
        action: 'pull',
        timestamp: 't1',
        target: { mediaType: manifest, repository: 'acme/app', tag: '1', digest: 'sha256:ab' },
        actor: { name: 'alice' },
      }),
      JSON.stringify({ action: 'push', target: { mediaType: manifest, repository: 'acme/app', tag: '1' } }),
      JSON.stringify({
        action: 'pull',
        target: { mediaType: 'application/octet-stream', repository: 'acme/app', digest: 'sha256:cd' },
        actor: { name: 'alice' },
      }),
      JSON.stringify({
        action: 'pull',
        timestamp: 't2',
        target: { mediaType: manifest, repository: 'acme/app', digest: 'sha256:ab' },
        actor: {},
      }),
    ].join('\n');
    expect(parsePulls(log)).to.deep.equal([
      { user: 'alice', repository: 'acme/app', reference: '1', time: 't1' },
      { user: '', repository: 'acme/app', reference: 'sha256:ab', time: 't2' },
    ]);
  });
});

describe('local node: cleanup planning', () => {
  it('plans nothing on a clean machine', () => {
    expect(planCleanup(observed(), originals)).to.deep.equal([]);
  });

  it('unmounts deepest first, only below the node root and the paths the node created', () => {
    const steps = planCleanup(
      observed({
        mounts: [
          '/',
          `${NODE_ROOT}/kubelet`,
          `${NODE_ROOT}/kubelet/pods/u/volumes/x`,
          '/etc/cni/mine',
          '/var/lib/kubelet/device-plugins',
          '/home/other',
        ],
        existing: ['/var/lib/kubelet', '/etc/cni'],
        nodeRootExists: true,
      }),
      originals,
    );
    expect(steps.filter((s) => s.kind === 'unmount').map((s) => (s as { path: string }).path)).to.deep.equal([
      `${NODE_ROOT}/kubelet/pods/u/volumes/x`,
      '/var/lib/kubelet/device-plugins',
      `${NODE_ROOT}/kubelet`,
    ]);
    // /etc/cni existed before: left alone; /var/lib/kubelet did not: removed, after its mounts.
    const removals = steps.filter((s) => s.kind === 'remove-path').map((s) => (s as { path: string }).path);
    expect(removals).to.deep.equal(['/var/lib/kubelet', NODE_ROOT]);
    expect(steps.findIndex((s) => s.kind === 'remove-path')).to.be.greaterThan(
      steps.findLastIndex((s) => s.kind === 'unmount'),
    );
  });

  it('removes veths before the bridge, kubepods cgroups deepest first, and kube-proxy tables it added', () => {
    const steps = planCleanup(
      observed({
        links: [
          { name: 'eth0' },
          { name: BRIDGE },
          { name: 'veth1', master: BRIDGE },
          { name: 'vethx', master: 'br9' },
        ],
        cgroups: ['/sys/fs/cgroup/cpu/kubepods', '/sys/fs/cgroup/cpu/kubepods/besteffort'],
        nftTables: ['ip kube-proxy', 'inet other'],
      }),
      originals,
    );
    expect(steps).to.deep.equal([
      { kind: 'delete-link', name: 'veth1' },
      { kind: 'delete-link', name: BRIDGE },
      { kind: 'delete-nft-table', table: 'ip kube-proxy' },
      { kind: 'remove-cgroup', path: '/sys/fs/cgroup/cpu/kubepods/besteffort' },
      { kind: 'remove-cgroup', path: '/sys/fs/cgroup/cpu/kubepods' },
    ]);
  });

  it('restores exactly the kernel settings that differ from the saved originals', () => {
    const steps = planCleanup(
      observed({
        kernel: { 'vm/overcommit_memory': '1', 'kernel/panic': '10', 'kernel/panic_on_oops': '0' },
      }),
      originals,
    );
    expect(steps).to.deep.equal([
      { kind: 'restore-kernel', key: 'vm/overcommit_memory', value: '0' },
      { kind: 'restore-kernel', key: 'kernel/panic', value: '1' },
    ]);
  });

  it('without saved originals touches no kernel setting and no fixed path', () => {
    const steps = planCleanup(
      observed({
        kernel: { 'kernel/panic': '10' },
        existing: ['/var/lib/kubelet'],
        mounts: ['/var/lib/kubelet/x'],
      }),
      undefined,
    );
    expect(steps).to.deep.equal([]);
  });
});
