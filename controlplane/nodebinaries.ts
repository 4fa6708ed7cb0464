/**
 * Finds or builds everything a local node runs, next to the control plane's binaries in the same
 * versioned cache (`~/.cache/regcred/k8s/<kubernetes version>/`):
 *
 * - from the Kubernetes module `./k8s`: kubelet, kube-scheduler, kube-proxy;
 * - from the module `./containerd`: containerd 2.x, its runc shim, ctr, crane (images without a
 *   Docker engine) and a bcrypt `htpasswd` for the registry;
 * - Debian packages, fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
 *   `debian/root` of the cache, never installed: runc, the CNI plugins, the distribution registry,
 *   busybox (test and pause images) and nftables (kube-proxy's `nft`, with its two libraries).
 *
 * Versions are pinned in one place each: the Go modules' `go.mod` require lines, and
 * `DEBIAN_PACKAGES` below. Go binaries follow the control plane's build rules (fingerprints,
 * progress, build lock; `CGO_ENABLED=0`); the Debian packages are unpacked under the same lock, and
 * a `debian.json` written last marks them complete for exactly the pinned versions.
 *
 * Errors: a failed build or download throws a `ControlPlaneError` naming the cause.
 */
import { execFile } from 'node:child_process';
import { access, constants, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import {
  acquireLock,
  type Component,
  cacheRoot,
  ensureBuilt,
  GO_MODULE_DIR,
  kubernetesVersion,
  type ResolveOptions,
} from './binaries.ts';
import { ControlPlaneError } from './errors.ts';
import { formatDuration } from './progress.ts';

const run = promisify(execFile);

export const CONTAINERD_MODULE_DIR = join(dirname(GO_MODULE_DIR), 'containerd');

export const NODE_COMPONENTS: readonly Component[] = [
  { name: 'kubelet', pkg: 'k8s.io/kubernetes/cmd/kubelet' },
  { name: 'kube-scheduler', pkg: 'k8s.io/kubernetes/cmd/kube-scheduler' },
  { name: 'kube-proxy', pkg: 'k8s.io/kubernetes/cmd/kube-proxy' },
  ...['containerd', 'containerd-shim-runc-v2', 'ctr'].map((name) => ({
    name,
    pkg: `github.com/containerd/containerd/v2/cmd/${name}`,
    moduleDir: CONTAINERD_MODULE_DIR,
    tags: ['no_btrfs'],
    kubernetesLdflags: false,
  })),
  {
    name: 'crane',
    pkg: 'github.com/google/go-containerregistry/cmd/crane',
    moduleDir: CONTAINERD_MODULE_DIR,
    kubernetesLdflags: false,
  },
  {
    name: 'htpasswd',
    pkg: './cmd/htpasswd',
    source: 'cmd/htpasswd',
    moduleDir: CONTAINERD_MODULE_DIR,
    kubernetesLdflags: false,
  },
];

/** Debian 12 packages, pinned: name → version (what `apt-get download name=version` fetches). */
export const DEBIAN_PACKAGES: Readonly<Record<string, string>> = {
  runc: '1.1.5+ds1-1+deb12u1',
  'containernetworking-plugins': '1.1.1+ds1-3+b5',
  'docker-registry': '2.8.2+ds1-1',
  'busybox-static': '1:1.35.0-4+deb12u1+b1',
  nftables: '1.0.6-2+deb12u2',
  libnftables1: '1.0.6-2+deb12u2',
  libnftnl11: '1.2.4-2',
};

export interface NodeBinaries {
  kubelet: string;
  kubeScheduler: string;
  kubeProxy: string;
  containerd: string;
  /** The folder holding containerd-shim-runc-v2 (containerd finds its shim on PATH). */
  binDir: string;
  ctr: string;
  crane: string;
  htpasswd: string;
  runc: string;
  /** The CNI plugins folder (bridge, host-local, loopback, …). */
  cniDir: string;
  registry: string;
  busybox: string;
  /** `nft` and the folder of its libraries (LD_LIBRARY_PATH). */
  nft: string;
  nftLibDir: string;
}

/** The paths inside the unpacked Debian root; pure, for tests. */
export function debianPaths(
  root: string,
): Pick<NodeBinaries, 'runc' | 'cniDir' | 'registry' | 'busybox' | 'nft' | 'nftLibDir'> {
  return {
    runc: join(root, 'usr/sbin/runc'),
    cniDir: join(root, 'usr/lib/cni'),
    registry: join(root, 'usr/bin/docker-registry'),
    busybox: join(root, 'bin/busybox'),
    nft: join(root, 'usr/sbin/nft'),
    nftLibDir: join(root, 'usr/lib/x86_64-linux-gnu'),
  };
}

/** `apt-get download` arguments for the pinned packages. */
export function aptDownloadArgs(packages: Readonly<Record<string, string>> = DEBIAN_PACKAGES): string[] {
  return ['download', ...Object.entries(packages).map(([name, version]) => `${name}=${version}`)];
}

/** Returns the node's binaries, building and unpacking them on first use. */
export async function resolveNodeBinaries(options: ResolveOptions): Promise<NodeBinaries> {
  const env = options.env ?? process.env;
  const binDir = await ensureBuilt(NODE_COMPONENTS, options);
  const versionDir = join(cacheRoot(env), await kubernetesVersion(options.goModDir));
  const root = await ensureDebianPackages(versionDir, options);
  return {
    kubelet: join(binDir, 'kubelet'),
    kubeScheduler: join(binDir, 'kube-scheduler'),
    kubeProxy: join(binDir, 'kube-proxy'),
    containerd: join(binDir, 'containerd'),
    binDir,
    ctr: join(binDir, 'ctr'),
    crane: join(binDir, 'crane'),
    htpasswd: join(binDir, 'htpasswd'),
    ...debianPaths(root),
  };
}

async function ensureDebianPackages(versionDir: string, { progress }: ResolveOptions): Promise<string> {
  return unpackDebianPackages({
    dir: join(versionDir, 'debian'),
    marker: join(versionDir, 'debian.json'),
    lockDir: join(versionDir, 'build.lock'),
    packages: DEBIAN_PACKAGES,
    required: (root) => Object.values(debianPaths(root)),
    progress,
  });
}

/**
 * Fetches `packages` (name → version) with `apt-get download` into `<dir>/debs` and unpacks them
 * with `dpkg-deb -x` into `<dir>/root`, never installing anything; returns the root. Under
 * `lockDir`; `marker` (written last) records exactly the versions unpacked, so a changed pin
 * unpacks afresh and an interrupted run is redone. Every path of `required(root)` must exist.
 */
export async function unpackDebianPackages(o: {
  dir: string;
  marker: string;
  lockDir: string;
  packages: Readonly<Record<string, string>>;
  required: (root: string) => string[];
  progress: ResolveOptions['progress'];
}): Promise<string> {
  const { dir, marker, packages, progress } = o;
  const root = join(dir, 'root');
  const complete = async () => {
    try {
      const info = JSON.parse(await readFile(marker, 'utf8'));
      return JSON.stringify(info.packages) === JSON.stringify(packages);
    } catch {
      return false;
    }
  };
  if (await complete()) return root;
  await mkdir(dirname(o.lockDir), { recursive: true });
  const release = await acquireLock(o.lockDir, progress);
  try {
    if (await complete()) return root;
    const started = Date.now();
    const debs = join(dir, 'debs');
    await rm(dir, { recursive: true, force: true });
    await mkdir(debs, { recursive: true });
    progress.status(`fetching Debian packages ${Object.keys(packages).join(', ')}`);
    const args = aptDownloadArgs(packages);
    try {
      await run('apt-get', args, { cwd: debs });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      if (e.code === 'ENOENT') {
        throw new ControlPlaneError(
          `Debian packages are needed (${Object.keys(packages).join(', ')}), and apt-get is not on PATH`,
        );
      }
      // Package lists may be missing on a fresh machine: refresh them once, then try again.
      progress.note('apt-get download failed; running apt-get update once and retrying');
      await run('apt-get', ['update']).catch(() => {});
      try {
        await run('apt-get', args, { cwd: debs });
      } catch (again) {
        const message = ((again as { stderr?: string }).stderr ?? String(again)).trim().split('\n').pop();
        throw new ControlPlaneError(`apt-get download of the pinned Debian packages failed: ${message}`);
      }
    }
    for (const deb of (await readdir(debs)).filter((f) => f.endsWith('.deb')).sort()) {
      await run('dpkg-deb', ['-x', join(debs, deb), root]);
    }
    for (const path of o.required(root)) await access(path, constants.R_OK);
    await writeFile(marker, `${JSON.stringify({ packages }, null, 2)}\n`);
    progress.done(`unpacked Debian packages into ${root} in ${formatDuration(Date.now() - started)}`);
  } finally {
    await release();
  }
  return root;
}
