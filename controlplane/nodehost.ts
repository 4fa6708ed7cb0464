/**
 * What a local node changes on the machine, and how to put it back: the one-node-per-machine
 * lock, the originals saved before kubelet first starts, the CNI bridge, and the cleanup that runs
 * at stop and, after a crash, at the next start.
 *
 * A node uses fixed host paths and ports (kubelet's device-plugin folder, containerd's shim
 * sockets, kubelet's ports), so only one runs per machine. Its state lives in
 * `HOST_STATE_DIR` (`/run/regcred-node`): `lock/pid` (the owning process) and `originals.json`
 * (kernel settings and which fixed paths existed, written before anything changes, removed only
 * after everything is put back). A lock whose owner is dead means a crashed run: its leftovers
 * are removed with the originals it saved, so the true originals come back.
 *
 * Guarantees: cleanup touches only what a node creates: processes that name `NODE_ROOT` or run in
 * `kubepods*` cgroups, mounts below `NODE_ROOT` or below fixed paths that did not exist before,
 * `kubepods*` cgroups in every hierarchy, the bridge `BRIDGE` and veths on it, the nft tables
 * kube-proxy owns (when they were not there before), the watched kernel settings, and fixed paths
 * that did not exist before. The planning is a pure function (`planCleanup`), unit-tested.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ControlPlaneError } from './errors.ts';
import { isProcessAlive } from './process.ts';
import type { Progress } from './progress.ts';

const run = promisify(execFile);

export const HOST_STATE_DIR = '/run/regcred-node';
export const NODE_ROOT = join(tmpdir(), 'regcred-node');
export const BRIDGE = 'regcred0';
export const BRIDGE_ADDRESS = '10.201.0.1';
export const POD_SUBNET = '10.201.0.0/24';
export const CGROUP_ROOT = '/sys/fs/cgroup';

/** Kernel settings kubelet (and kube-proxy, the CNI plugins) may change; all are saved and restored. */
export const KERNEL_SETTINGS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/route_localnet',
  'net/bridge/bridge-nf-call-iptables',
  'net/netfilter/nf_conntrack_max',
  'net/netfilter/nf_conntrack_tcp_timeout_established',
  'net/netfilter/nf_conntrack_tcp_timeout_close_wait',
  'net/netfilter/nf_conntrack_tcp_be_liberal',
] as const;

/** Host paths kubelet and containerd use whatever their configuration says. */
export const FIXED_HOST_PATHS = [
  '/var/lib/kubelet',
  '/var/lib/cni',
  '/var/log/containers',
  '/var/log/pods',
  '/run/containerd',
  '/run/netns',
  '/var/run/nri',
  '/etc/cni',
  '/opt/cni',
  '/opt/containerd',
  '/etc/kubernetes',
  // libmount's state folder, made by mount and umount (kubelet's and this cleanup's).
  '/run/mount',
] as const;

/** nft tables kube-proxy creates (family, name). */
export const NFT_TABLES = [
  ['ip', 'kube-proxy'],
  ['ip6', 'kube-proxy'],
] as const;

export interface Originals {
  bootId: string;
  kernel: Record<string, string>;
  /** Fixed host path → whether it existed before the node started. */
  existed: Record<string, boolean>;
  /** nft tables ("family name") that existed before. */
  nftTables: string[];
}

export interface Observed {
  /** Mount points, as /proc/self/mountinfo lists them. */
  mounts: string[];
  /** Every `kubepods*` cgroup folder (any depth below a top-level kubepods folder). */
  cgroups: string[];
  /** Network links: name and master. */
  links: { name: string; master?: string }[];
  nftTables: string[];
  kernel: Record<string, string>;
  /** Fixed host paths that exist now. */
  existing: string[];
  nodeRootExists: boolean;
}

export type Step =
  | { kind: 'unmount'; path: string }
  | { kind: 'delete-link'; name: string }
  | { kind: 'delete-nft-table'; table: string }
  | { kind: 'remove-cgroup'; path: string }
  | { kind: 'restore-kernel'; key: string; value: string }
  | { kind: 'remove-path'; path: string };

function under(path: string, root: string): boolean {
  return path === root || path.startsWith(`${root}/`);
}

/**
 * The steps that return the machine to `originals` from `observed`, in a safe order: mounts
 * (deepest first) before the folders holding them, veths before the bridge, cgroups deepest
 * first, and no folder removal below which anything is still mounted.
 */
export function planCleanup(observed: Observed, originals: Originals | undefined): Step[] {
  const steps: Step[] = [];
  const created = FIXED_HOST_PATHS.filter((p) => originals && !originals.existed[p]);
  const roots = [NODE_ROOT, ...created];
  const mounts = observed.mounts
    .filter((m) => roots.some((r) => under(m, r)))
    .sort((a, b) => b.split('/').length - a.split('/').length || b.localeCompare(a));
  for (const path of [...new Set(mounts)]) steps.push({ kind: 'unmount', path });
  for (const l of observed.links) if (l.master === BRIDGE) steps.push({ kind: 'delete-link', name: l.name });
  if (observed.links.some((l) => l.name === BRIDGE)) steps.push({ kind: 'delete-link', name: BRIDGE });
  for (const [family, name] of NFT_TABLES) {
    const table = `${family} ${name}`;
    if (observed.nftTables.includes(table) && !originals?.nftTables.includes(table))
      steps.push({ kind: 'delete-nft-table', table });
  }
  const cgroups = [...observed.cgroups].sort(
    (a, b) => b.split('/').length - a.split('/').length || b.localeCompare(a),
  );
  for (const path of cgroups) steps.push({ kind: 'remove-cgroup', path });
  if (originals) {
    for (const [key, value] of Object.entries(originals.kernel)) {
      if (observed.kernel[key] !== undefined && observed.kernel[key] !== value)
        steps.push({ kind: 'restore-kernel', key, value });
    }
  }
  for (const p of created) if (observed.existing.includes(p)) steps.push({ kind: 'remove-path', path: p });
  if (observed.nodeRootExists) steps.push({ kind: 'remove-path', path: NODE_ROOT });
  return steps;
}

function decodeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

export async function readMounts(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => decodeMountPath(l.split(' ')[4] ?? ''));
}

/** Every `kubepods*` folder in every cgroup hierarchy (v1 controllers, named and unified). */
export async function readKubepodsCgroups(root = CGROUP_ROOT): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string) => {
    found.push(dir);
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(dir, e.name));
    }
  };
  const hierarchies = await readdir(root, { withFileTypes: true }).catch(() => []);
  const dirs = hierarchies.filter((h) => h.isDirectory()).map((h) => join(root, h.name));
  // cgroup v2 alone mounts the unified hierarchy at the root itself.
  if (await lstat(join(root, 'cgroup.controllers')).catch(() => undefined)) dirs.push(root);
  for (const h of dirs) {
    for (const e of await readdir(h, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory() && e.name.startsWith('kubepods')) await walk(join(h, e.name));
    }
  }
  return found;
}

export async function readLinks(): Promise<{ name: string; master?: string }[]> {
  const { stdout } = await run('ip', ['-j', 'link', 'show']);
  const links = JSON.parse(stdout) as { ifname: string; master?: string }[];
  return links.map((l) => (l.master ? { name: l.ifname, master: l.master } : { name: l.ifname }));
}

export async function readKernel(): Promise<Record<string, string>> {
  const values: Record<string, string> = {};
  for (const key of KERNEL_SETTINGS) {
    try {
      values[key] = (await readFile(join('/proc/sys', key), 'utf8')).trim();
    } catch {
      // Not on this kernel (e.g. conntrack not loaded yet).
    }
  }
  return values;
}

export interface Nft {
  nft: string;
  nftLibDir: string;
}

export async function nftRun(tools: Nft, args: string[]): Promise<string> {
  const { stdout } = await run(tools.nft, args, {
    env: { ...process.env, LD_LIBRARY_PATH: tools.nftLibDir },
  });
  return stdout;
}

export async function readNftTables(tools: Nft | undefined): Promise<string[]> {
  if (!tools) return [];
  const out = await nftRun(tools, ['list', 'tables']);
  return out
    .split('\n')
    .map((l) => l.replace(/^table\s+/, '').trim())
    .filter(Boolean);
}

async function exists(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined)) !== undefined;
}

export async function observe(tools: Nft | undefined): Promise<Observed> {
  const existing: string[] = [];
  for (const p of FIXED_HOST_PATHS) if (await exists(p)) existing.push(p);
  return {
    mounts: await readMounts(),
    cgroups: await readKubepodsCgroups(),
    links: await readLinks(),
    nftTables: await readNftTables(tools),
    kernel: await readKernel(),
    existing,
    nodeRootExists: await exists(NODE_ROOT),
  };
}

function bootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

const ORIGINALS = join(HOST_STATE_DIR, 'originals.json');
const LOCK = join(HOST_STATE_DIR, 'lock');

async function readOriginals(): Promise<Originals | undefined> {
  try {
    const o = JSON.parse(await readFile(ORIGINALS, 'utf8')) as Originals;
    // Kernel settings do not survive a reboot: originals from an earlier boot are not true any more.
    return o.bootId === bootId() ? o : { ...o, kernel: {} };
  } catch {
    return undefined;
  }
}

/** Processes that belong to a node: they name NODE_ROOT, or run in a kubepods cgroup. */
export function nodeProcesses(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || pid === process.ppid || pid <= 1) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      let environ = '';
      try {
        environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      } catch {
        // Not readable: judge by the rest.
      }
      const mark = `${NODE_ROOT}/`;
      if (cmdline.includes(mark) || environ.includes(mark) || /:\/kubepods/m.test(cgroup)) pids.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

async function killNodeProcesses(): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const pids = nodeProcesses();
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
    if (Date.now() > deadline)
      throw new ControlPlaneError(`node processes ${pids.join(', ')} survive SIGKILL; remove them by hand`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function apply(step: Step, tools: Nft | undefined): Promise<void> {
  switch (step.kind) {
    case 'unmount':
      await run('umount', [step.path]).catch(() => run('umount', ['-l', step.path]));
      return;
    case 'delete-link':
      await run('ip', ['link', 'delete', step.name]).catch(() => {});
      return;
    case 'delete-nft-table':
      if (tools) await nftRun(tools, ['delete', 'table', ...step.table.split(' ')]);
      return;
    case 'remove-cgroup': {
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          await rmdir(step.path);
          return;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return;
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    case 'restore-kernel':
      await writeFile(join('/proc/sys', step.key), step.value);
      return;
    case 'remove-path': {
      const still = (await readMounts()).filter((m) => under(m, step.path));
      if (still.length > 0)
        throw new ControlPlaneError(`not removing ${step.path}: ${still[0]} is still mounted`);
      await rm(step.path, { recursive: true, force: true });
      return;
    }
  }
}

/** Puts the machine back: kills node processes, then plans and applies the cleanup. */
export async function cleanNode(tools: Nft | undefined, originals: Originals | undefined): Promise<void> {
  await killNodeProcesses();
  // Unmounting can reveal what was below (a mount over a mount): plan again until nothing is left.
  for (let round = 0; round < 5; round++) {
    const steps = planCleanup(await observe(tools), originals);
    if (steps.length === 0) return;
    const errors: string[] = [];
    for (const step of steps) {
      try {
        await apply(step, tools);
      } catch (err) {
        errors.push(`${step.kind} ${JSON.stringify(step)}: ${(err as Error).message}`);
      }
    }
    if (errors.length > 0 && round === 4)
      throw new ControlPlaneError(`node cleanup incomplete: ${errors.join('; ')}`);
  }
}

/** One line naming why a node cannot run here, or undefined when it can. */
export async function nodePreflight(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `a local node needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'a local node needs root (kubelet mounts, cgroups, network links)';
  const v1 = await exists(join(CGROUP_ROOT, 'memory', 'memory.limit_in_bytes'));
  const v2 = await exists(join(CGROUP_ROOT, 'cgroup.controllers'));
  if (!v1 && !v2) return `a local node needs cgroups, and ${CGROUP_ROOT} has neither v1 controllers nor v2`;
  for (const [tool, args] of [
    ['ip', ['-V']],
    ['umount', ['--version']],
    ['tar', ['--version']],
    ['dpkg-deb', ['--version']],
  ] as const) {
    try {
      await run(tool, [...args]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return `a local node needs \`${tool}\` on PATH`;
    }
  }
  return undefined;
}

export interface HostLease {
  originals: Originals;
  release(): Promise<void>;
}

/**
 * Takes the machine's one node: waits (up to `waitMs`) for a live holder, cleans a dead holder's
 * leftovers with the originals it saved, saves the originals, then creates the bridge.
 */
export async function acquireHost(tools: Nft, progress: Progress, waitMs: number): Promise<HostLease> {
  await mkdir(HOST_STATE_DIR, { recursive: true });
  const deadline = Date.now() + waitMs;
  let announced = false;
  for (;;) {
    try {
      await mkdir(LOCK);
      await writeFile(join(LOCK, 'pid'), String(process.pid));
      break;
    } catch (err) {
      // ENOENT: a holder releasing just removed the state folder; make it again.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        await mkdir(HOST_STATE_DIR, { recursive: true });
        continue;
      }
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number.parseInt(await readFile(join(LOCK, 'pid'), 'utf8').catch(() => ''), 10);
    if (!isProcessAlive(owner)) {
      // Give a holder that is just writing its pid a moment before taking over.
      await new Promise((r) => setTimeout(r, 200));
      const again = Number.parseInt(await readFile(join(LOCK, 'pid'), 'utf8').catch(() => ''), 10);
      if (again === owner && !isProcessAlive(owner)) await rm(LOCK, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new ControlPlaneError(
        `another run (pid ${owner}) holds this machine's one local node (lock ${LOCK}); waited ${Math.round(waitMs / 1000)}s`,
      );
    }
    if (!announced) {
      progress.note(`another run (pid ${owner}) holds this machine's local node; waiting for it`);
      announced = true;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  let saved: Originals | undefined;
  try {
    const leftover = await readOriginals();
    const before = await observe(tools);
    if (leftover || planCleanup(before, undefined).length > 0) {
      progress.note('cleaning up a local node left by an interrupted run');
      await cleanNode(tools, leftover);
      await rm(ORIGINALS, { force: true });
    }
    const now = await observe(tools);
    const originals: Originals = {
      bootId: bootId(),
      kernel: now.kernel,
      existed: Object.fromEntries(FIXED_HOST_PATHS.map((p) => [p, now.existing.includes(p)])),
      nftTables: now.nftTables,
    };
    await writeFile(ORIGINALS, JSON.stringify(originals, null, 2));
    saved = originals;
    await mkdir(NODE_ROOT, { recursive: true });
    await run('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${BRIDGE_ADDRESS}/24`, 'dev', BRIDGE]);
    await run('ip', ['link', 'set', BRIDGE, 'up']);
    return {
      originals,
      release: async () => {
        await cleanNode(tools, originals);
        await rm(ORIGINALS, { force: true });
        await rm(LOCK, { recursive: true, force: true });
        // The state folder goes too, unless another run is already waiting in it.
        await rmdir(HOST_STATE_DIR).catch(() => {});
      },
    };
  } catch (err) {
    if (saved) {
      await cleanNode(tools, saved).catch(() => {});
      await rm(ORIGINALS, { force: true });
    }
    await rm(LOCK, { recursive: true, force: true });
    throw err;
  }
}

/** Names of the programs a node runs, for `machineSnapshot`. */
const NODE_PROGRAMS =
  /^(kubelet|containerd|containerd-shim|kube-proxy|kube-scheduler|docker-registry|runc|pause)/;

/**
 * What a node may leave behind, as comparable text: node processes, mount points, `kubepods*`
 * cgroups, network links, the nft ruleset, the watched kernel settings and the fixed host paths
 * (and the node's own folders). Equal before a node starts and after it stops when nothing is left.
 */
export async function machineSnapshot(tools: Nft | undefined): Promise<Record<string, string[]>> {
  const processes: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (NODE_PROGRAMS.test(comm)) processes.push(`${entry} ${comm}`);
    } catch {
      // Gone meanwhile.
    }
  }
  for (const pid of nodeProcesses()) processes.push(`${pid} (names ${NODE_ROOT} or in kubepods)`);
  const kernel = await readKernel();
  const paths: string[] = [];
  for (const p of [...FIXED_HOST_PATHS, NODE_ROOT, HOST_STATE_DIR, LOCK, ORIGINALS])
    paths.push(`${p} ${(await exists(p)) ? 'exists' : 'absent'}`);
  return {
    processes: processes.sort(),
    mounts: (await readMounts()).sort(),
    cgroups: (await readKubepodsCgroups()).sort(),
    links: (await readLinks()).map((l) => l.name).sort(),
    nft: tools ? (await nftRun(tools, ['list', 'ruleset'])).split('\n').filter(Boolean) : [],
    kernel: Object.entries(kernel).map(([k, v]) => `${k}=${v}`),
    paths,
  };
}
