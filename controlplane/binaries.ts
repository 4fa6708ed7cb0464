/**
 * Finds or builds the four binaries a local control plane runs: kube-apiserver, etcd,
 * kube-controller-manager and kubectl; and the test tool kubelet-creds (`k8s/cmd/kubelet-creds`).
 *
 * Guarantees:
 * - `KUBEBUILDER_ASSETS` is used when it holds all four; otherwise the reason is logged and the
 *   binaries are built from the Go module in `./k8s` into a cache outside the repository,
 *   `$XDG_CACHE_HOME/regcred/k8s/<version>/bin` (default `~/.cache/...`), and reused afterwards.
 *   Test tools are always taken from (and built into) that cache, on first use.
 * - The Kubernetes version is read from `k8s/go.mod` (its one pinned place).
 * - Concurrent first builds are safe: one process builds under a lock directory, the others wait;
 *   every binary is written to a temporary name and renamed into place, so a binary in the cache is
 *   always complete. A `build-info.json` written last marks the cache valid: it
 *   holds each binary's fingerprint, go.mod and go.sum plus, for the module's own commands, their
 *   sources. A binary whose fingerprint changed is rebuilt, alone.
 *
 * Errors: missing Go, a failed build, or a lock held too long each throw a `ControlPlaneError`
 * naming the cause and the log to read.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, constants, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlPlaneError } from './errors.ts';
import { isProcessAlive } from './process.ts';
import { formatDuration, type Progress } from './progress.ts';

export const GO_MODULE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'k8s');

export interface Binaries {
  kubeApiserver: string;
  etcd: string;
  kubeControllerManager: string;
  kubectl: string;
  /** Where they came from, for the log line a user sees. */
  origin: string;
}

/**
 * A binary built from a Go module: `./k8s` unless `moduleDir` names another one; `source` is the
 * folder (or the folders) of one of the module's own commands; `kubernetesLdflags: false` for binaries outside
 * Kubernetes (their version comes from their module), `tags` are Go build tags.
 */
export interface Component {
  name: string;
  pkg: string;
  source?: string | readonly string[];
  moduleDir?: string;
  tags?: readonly string[];
  kubernetesLdflags?: boolean;
  /** `-X` flags of its own, for binaries outside Kubernetes (with `kubernetesLdflags: false`). */
  ldflags?: string;
}

const COMPONENTS: readonly Component[] = [
  { name: 'kube-apiserver', pkg: 'k8s.io/kubernetes/cmd/kube-apiserver' },
  { name: 'kube-controller-manager', pkg: 'k8s.io/kubernetes/cmd/kube-controller-manager' },
  { name: 'kubectl', pkg: 'k8s.io/kubernetes/cmd/kubectl' },
  { name: 'etcd', pkg: 'go.etcd.io/etcd/server/v3' },
];

/** Reads pull Secrets with kubelet's code; see `k8s/cmd/kubelet-creds/main.go`. */
const KUBELET_CREDS: Component = {
  name: 'kubelet-creds',
  pkg: './cmd/kubelet-creds',
  source: 'cmd/kubelet-creds',
};

/** Helm, from a module of its own (its Kubernetes libraries are not the control plane's). */
export const HELM_MODULE_DIR = join(dirname(GO_MODULE_DIR), 'helm');

/** The Kubernetes version pinned by the `k8s.io/kubernetes` require line of `k8s/go.mod`. */
export async function kubernetesVersion(goModDir = GO_MODULE_DIR): Promise<string> {
  const goMod = await readFile(join(goModDir, 'go.mod'), 'utf8');
  const match = /^\s*(?:require\s+)?k8s\.io\/kubernetes\s+(v\d+\.\d+\.\d+)\s*(?:\/\/.*)?$/m.exec(goMod);
  if (!match?.[1]) throw new ControlPlaneError(`no k8s.io/kubernetes version found in ${goModDir}/go.mod`);
  return match[1];
}

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'regcred', 'k8s');
}

/** The binary names missing from `dir`, empty when all four (or `components`) are there and executable. */
export async function missingBinaries(dir: string, components = COMPONENTS): Promise<string[]> {
  const missing: string[] = [];
  for (const c of components) {
    try {
      await access(join(dir, c.name), constants.X_OK);
    } catch {
      missing.push(c.name);
    }
  }
  return missing;
}

function binariesIn(dir: string, origin: string): Binaries {
  return {
    kubeApiserver: join(dir, 'kube-apiserver'),
    etcd: join(dir, 'etcd'),
    kubeControllerManager: join(dir, 'kube-controller-manager'),
    kubectl: join(dir, 'kubectl'),
    origin,
  };
}

/** `-X` flags so that `--version` and `/version` report the real version, not v0.0.0-master. */
export function versionLdflags(version: string): string {
  const m = /^v(\d+)\.(\d+)\.\d+$/.exec(version);
  if (!m) throw new ControlPlaneError(`unexpected Kubernetes version ${version}`);
  const vars = {
    gitVersion: version,
    gitMajor: m[1],
    gitMinor: m[2],
    gitTreeState: 'clean',
    buildDate: '1970-01-01T00:00:00Z',
  };
  const flags: string[] = [];
  for (const pkg of ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version']) {
    for (const [k, v] of Object.entries(vars)) flags.push(`-X ${pkg}.${k}=${v}`);
  }
  return `-s -w ${flags.join(' ')}`;
}

/** What a binary is built from: go.mod and go.sum, and the files of `source` for the module's own. */
export async function fingerprint(goModDir: string, source?: string | readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const f of ['go.mod', 'go.sum']) hash.update(await readFile(join(goModDir, f)));
  for (const folder of [source ?? []].flat()) {
    const root = join(goModDir, folder);
    const files = (await readdir(root, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile())
      .map((e) => relative(root, join(e.parentPath, e.name)))
      .sort();
    for (const f of files) {
      const content = await readFile(join(root, f));
      hash.update(`\0${f}\0${content.length}\0`).update(content);
    }
  }
  return hash.digest('hex');
}

/**
 * A component's fingerprint: `fingerprint()` of its module and sources, and its own link flags when
 * it has any (a changed flag, such as Helm 3's assumed Kubernetes version, rebuilds the binary).
 */
export async function componentFingerprint(c: Component, goModDir: string): Promise<string> {
  const files = await fingerprint(c.moduleDir ?? goModDir, c.source);
  return c.ldflags ? createHash('sha256').update(`${files}\0${c.ldflags}`).digest('hex') : files;
}

export interface ResolveOptions {
  progress: Progress;
  env?: NodeJS.ProcessEnv;
  goModDir?: string;
}

/** Returns usable control plane binaries, building them on first use. */
export async function resolveBinaries(options: ResolveOptions): Promise<Binaries> {
  const { progress, env = process.env } = options;
  const assets = env.KUBEBUILDER_ASSETS;
  if (assets) {
    const missing = await missingBinaries(assets);
    if (missing.length === 0) return binariesIn(assets, `KUBEBUILDER_ASSETS=${assets}`);
    progress.note(
      `KUBEBUILDER_ASSETS=${assets} lacks ${missing.join(', ')} (envtest's downloads carry no ` +
        'kube-controller-manager, which regcred needs for ServiceAccounts and namespace deletion); building instead',
    );
  }
  const binDir = await ensureBuilt(COMPONENTS, options);
  return binariesIn(binDir, binDir);
}

/** The path of kubelet-creds, built into the cache on first use (`KUBEBUILDER_ASSETS` has no say). */
export async function resolveKubeletCreds(options: ResolveOptions): Promise<string> {
  return join(await ensureBuilt([KUBELET_CREDS], options), KUBELET_CREDS.name);
}

/**
 * The path of helm (Helm 4, or Helm 3 when `major` is 3, as `helm3`), built into the cache on first
 * use. Its version is the helm.sh/helm/vN require line of `helm/go.mod` (its one pinned place),
 * which `helm version` then reports.
 */
export async function resolveHelm(options: ResolveOptions, major: 3 | 4 = 4): Promise<string> {
  const goMod = await readFile(join(HELM_MODULE_DIR, 'go.mod'), 'utf8');
  const module = `helm.sh/helm/v${major}`;
  const version = new RegExp(`^\\s*(?:require\\s+)?${module.replaceAll('.', '\\.')}\\s+(v\\S+)`, 'm').exec(
    goMod,
  )?.[1];
  if (!version) throw new ControlPlaneError(`no ${module} version found in ${HELM_MODULE_DIR}/go.mod`);
  const ldflags = [`-X ${module}/internal/version.version=${version}`];
  if (major === 3) {
    // Helm 3 takes the Kubernetes version it assumes without a cluster (helm template, helm lint)
    // from these, as its Makefile sets them from client-go's version (v0.37 → 1.37); unset, it
    // assumes 1.20, and the chart's kubeVersion (>= 1.29) refuses to render.
    const clientGo = /^\s*k8s\.io\/client-go\s+v0\.(\d+)\./m.exec(goMod)?.[1];
    if (!clientGo)
      throw new ControlPlaneError(`no k8s.io/client-go version found in ${HELM_MODULE_DIR}/go.mod`);
    for (const pkg of ['pkg/lint/rules', 'pkg/chartutil'])
      ldflags.push(
        `-X ${module}/${pkg}.k8sVersionMajor=1`,
        `-X ${module}/${pkg}.k8sVersionMinor=${clientGo}`,
      );
  }
  const helm: Component = {
    name: major === 4 ? 'helm' : `helm${major}`,
    pkg: `${module}/cmd/helm`,
    moduleDir: HELM_MODULE_DIR,
    kubernetesLdflags: false,
    ldflags: ldflags.join(' '),
  };
  return join(await ensureBuilt([helm], options), helm.name);
}

/** Builds those of `components` whose cached binary is missing or stale; returns the bin folder. */
export async function ensureBuilt(
  components: readonly Component[],
  { progress, env = process.env, goModDir = GO_MODULE_DIR }: ResolveOptions,
): Promise<string> {
  const version = await kubernetesVersion(goModDir);
  const versionDir = join(cacheRoot(env), version);
  const binDir = join(versionDir, 'bin');
  const wanted = new Map<string, string>();
  for (const c of components) wanted.set(c.name, await componentFingerprint(c, goModDir));
  if ((await staleComponents(versionDir, components, wanted)).length === 0) return binDir;

  await mkdir(versionDir, { recursive: true });
  const release = await acquireLock(join(versionDir, 'build.lock'), progress);
  try {
    // Another process may have finished the build while this one waited for the lock.
    const stale = await staleComponents(versionDir, components, wanted);
    if (stale.length > 0) {
      await build({
        version,
        components: stale,
        binDir,
        logPath: join(versionDir, 'build.log'),
        goModDir,
        progress,
        env,
      });
      const info = await readBuildInfo(versionDir);
      const binaries = { ...info.binaries };
      for (const c of stale) binaries[c.name] = wanted.get(c.name);
      // `...info` keeps an older cache's `fingerprint`, still true for the binaries not rebuilt.
      await writeFile(
        join(versionDir, 'build-info.json'),
        `${JSON.stringify({ ...info, version, binaries }, null, 2)}\n`,
      );
    }
  } finally {
    await release();
  }
  return binDir;
}

interface BuildInfo {
  /** Binary name → the fingerprint it was built from. */
  binaries?: Record<string, string | undefined>;
  /** Before per-binary fingerprints: go.mod and go.sum's, for every binary in the folder. */
  fingerprint?: string;
}

async function readBuildInfo(versionDir: string): Promise<BuildInfo> {
  try {
    return JSON.parse(await readFile(join(versionDir, 'build-info.json'), 'utf8'));
  } catch {
    return {};
  }
}

/** The components whose binary is missing from the cache or was built from other sources. */
async function staleComponents(
  versionDir: string,
  components: readonly Component[],
  wanted: Map<string, string>,
): Promise<Component[]> {
  const info = await readBuildInfo(versionDir);
  const missing = new Set(await missingBinaries(join(versionDir, 'bin'), components));
  return components.filter(
    (c) => missing.has(c.name) || (info.binaries?.[c.name] ?? info.fingerprint) !== wanted.get(c.name),
  );
}

const LOCK_WAIT_MS = 60 * 60 * 1000;

/**
 * A lock directory holding the owner's PID. A lock whose owner is dead is taken over, so a build
 * interrupted by Ctrl-C never blocks the next one.
 */
export async function acquireLock(lockDir: string, progress: Progress): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let announced = false;
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(join(lockDir, 'pid'), String(process.pid));
      return () => rm(lockDir, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number.parseInt(await readFile(join(lockDir, 'pid'), 'utf8').catch(() => ''), 10);
    if (Number.isInteger(owner) && !isProcessAlive(owner)) {
      await rm(lockDir, { recursive: true, force: true });
      continue;
    }
    if (!announced) {
      progress.note(`another process (pid ${owner || '?'}) is building the control plane; waiting for it`);
      announced = true;
    }
    if (Date.now() > deadline) throw new ControlPlaneError(`gave up waiting for the build lock ${lockDir}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

interface BuildOptions {
  version: string;
  components: readonly Component[];
  binDir: string;
  logPath: string;
  goModDir: string;
  progress: Progress;
  env: NodeJS.ProcessEnv;
}

async function build({
  version,
  components,
  binDir,
  logPath,
  goModDir,
  progress,
  env,
}: BuildOptions): Promise<void> {
  await mkdir(binDir, { recursive: true });
  const goEnv = { ...env, CGO_ENABLED: '0' };
  await checkGo(goEnv, goModDir);
  const log = createWriteStream(logPath, { flags: 'w' });
  const started = Date.now();
  const names = components.map((c) => c.name).join(', ');
  const estimate = components.includes(COMPONENTS[0]!)
    ? ' (first run only; ≈ 8 min on 2 cores)'
    : components.some((c) => c.name === 'kubelet')
      ? ' (first run only; ≈ 3 min on 2 cores)'
      : '';
  progress.note(`building ${names} (Kubernetes ${version}) into ${binDir}${estimate}`);
  try {
    for (const [i, c] of components.entries()) {
      const label = `${c.name} (${i + 1}/${components.length})`;
      const flags = [
        '-trimpath',
        '-ldflags',
        c.kubernetesLdflags === false ? `-s -w ${c.ldflags ?? ''}`.trim() : versionLdflags(version),
        ...(c.tags?.length ? ['-tags', c.tags.join(',')] : []),
      ];
      const cwd = c.moduleDir ?? goModDir;
      const tmp = join(binDir, `.${c.name}.${process.pid}.tmp`);
      let compiled = 0;
      let total = 0;
      const update = () => {
        const elapsed = `${formatDuration(Date.now() - started)} elapsed`;
        progress.status(
          total === 0
            ? `building ${label}: listing packages (the first build downloads Go modules), ${elapsed}`
            : `building ${label}: ${compiled}/${total} packages compiled, ${elapsed}`,
        );
      };
      const timer = setInterval(update, 1000);
      try {
        log.write(`\n# go list -deps ${c.pkg}\n`);
        total = await countStalePackages(c.pkg, goEnv, cwd, log, c.tags);
        update();
        log.write(`\n# go build ${c.pkg}\n`);
        // `go build -v` prints each package it compiles, one import path per line.
        await runGo(['build', '-v', ...flags, '-o', tmp, c.pkg], goEnv, cwd, log, (line) => {
          if (/^[\w.\-/]+$/.test(line)) compiled = Math.min(compiled + 1, total);
        });
        await rename(tmp, join(binDir, c.name));
      } catch (err) {
        await rm(tmp, { force: true });
        throw new ControlPlaneError(`building ${c.name} failed: ${(err as Error).message}; read ${logPath}`);
      } finally {
        clearInterval(timer);
      }
      progress.done(`built ${label}, ${formatDuration(Date.now() - started)} elapsed`);
    }
  } finally {
    await new Promise((r) => log.end(r));
  }
}

async function checkGo(env: NodeJS.ProcessEnv, cwd: string): Promise<void> {
  try {
    await runGo(['version'], env, cwd);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ControlPlaneError(
        'Go is needed to build the local control plane the first time, and `go` is not on PATH. ' +
          'Install Go >= 1.26 (https://go.dev/dl/), or set KUBEBUILDER_ASSETS to a folder holding ' +
          'kube-apiserver, etcd, kube-controller-manager and kubectl.',
      );
    }
    throw err;
  }
}

/** How many packages `go build -trimpath` will compile for `pkg`: the stale ones. */
async function countStalePackages(
  pkg: string,
  env: NodeJS.ProcessEnv,
  cwd: string,
  log: NodeJS.WritableStream,
  tags?: readonly string[],
): Promise<number> {
  let count = 0;
  await runGo(
    [
      'list',
      '-deps',
      '-trimpath',
      ...(tags?.length ? ['-tags', tags.join(',')] : []),
      '-f',
      '{{if .Stale}}stale{{end}}',
      pkg,
    ],
    env,
    cwd,
    undefined,
    (line) => {
      if (line === 'stale') count++;
      else if (line) log.write(`${line}\n`);
    },
  );
  return count;
}

/** Runs `go`, streaming its output lines to `onLine` and to `log`; rejects with the tail on failure. */
function runGo(
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
  log?: NodeJS.WritableStream,
  onLine?: (line: string) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('go', args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    let partial = '';
    const onData = (chunk: Buffer) => {
      log?.write(chunk);
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        onLine?.(line);
        tail.push(line);
        if (tail.length > 5) tail.shift();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`go ${args[0]} exited with ${signal ?? code}: ${tail.join(' | ')}`));
    });
  });
}
