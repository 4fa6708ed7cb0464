/**
 * The image, built from the project's Dockerfile with buildah (no Docker engine) on the local
 * stand-in base, and inspected as built: what it holds, how it starts. That it runs as the
 * Deployment's Pods, takes SIGTERM and serves its probes is shown on the real node
 * (in-cluster.test.ts).
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Buildah, type BuildResult, LOCAL_BASE, nodeBinary } from '../../controlplane/image.ts';
import { streamProgress } from '../../controlplane/index.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

/** `node_modules/...` path → `name@version` of every package below `dir/node_modules`. */
function installedPackages(dir: string, base = dir): Map<string, string> {
  const found = new Map<string, string>();
  const modules = join(dir, 'node_modules');
  if (!existsSync(modules)) return found;
  const packageDirs = readdirSync(modules).flatMap((entry) => {
    if (entry.startsWith('.')) return [];
    if (!entry.startsWith('@')) return [join(modules, entry)];
    return readdirSync(join(modules, entry)).map((name) => join(modules, entry, name));
  });
  for (const pkg of packageDirs) {
    const manifest = join(pkg, 'package.json');
    if (!existsSync(manifest)) continue;
    const { name, version } = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string; version: string };
    found.set(relative(base, pkg), `${name}@${version}`);
    for (const [path, id] of installedPackages(pkg, base)) found.set(path, id);
  }
  return found;
}

/** What `npm ls --omit=dev` says production needs, as `node_modules/...` path → `name@version`. */
async function productionTree(): Promise<Map<string, string>> {
  // npm ls exits 1 on problems of the checkout's tree (say, an extraneous package); it still lists
  // the tree, and any difference from the image shows in the comparison.
  const { stdout } = await run('npm', ['ls', '--omit=dev', '--all', '--parseable', '--long'], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  }).catch((err: { stdout?: string }) => {
    if (!err.stdout) throw err;
    return { stdout: err.stdout };
  });
  const tree = new Map<string, string>();
  for (const line of stdout.split('\n').filter(Boolean)) {
    const [path, id, ...flags] = line.split(':');
    const rel = relative(ROOT, path!);
    // Extraneous: in this checkout's node_modules but in no dependency's tree (here, a hoisted
    // copy left by the dev package `node`'s install script).
    if (rel && !flags.includes('EXTRANEOUS')) tree.set(rel, id!);
  }
  return tree;
}

describe('the image, built from the Dockerfile', function () {
  this.timeout(15 * 60_000);
  const progress = streamProgress(process.stderr, '[image] ');
  let buildah: Buildah;
  let first: BuildResult;
  let config: NonNullable<Awaited<ReturnType<Buildah['config']>>>;

  before(async () => {
    buildah = await Buildah.resolve(progress);
    first = await buildah.build({ tag: 'image-test', localBase: true, progress });
    config = (await buildah.config(first.ref))!;
    const mb = (await buildah.size(first.ref)) / 1e6;
    progress.note(
      `image ${first.ref}: ${mb.toFixed(0)} MB; base ${first.baseBuilt ? 'made' : 'reused'} in ` +
        `${(first.baseMs / 1000).toFixed(1)} s, build ${(first.buildMs / 1000).toFixed(1)} s`,
    );
  });

  it('builds with buildah on the local stand-in base, pulling nothing, and a rebuild reuses every step', async () => {
    const base = await buildah.config(LOCAL_BASE);
    expect(base?.Env).to.include(`NODE_VERSION=${nodeBinary().version}`);
    expect(first.output.join('\n')).not.to.match(
      /Trying to pull|Getting image source signatures.*docker\.io/,
    );
    const again = await buildah.build({ tag: 'image-test', localBase: true, progress });
    progress.note(`rebuild with nothing changed: ${(again.buildMs / 1000).toFixed(1)} s`);
    expect(again.baseBuilt).to.equal(false);
    expect(again.id).to.equal(first.id);
    // Every instruction after the two FROM lines came from the layer cache, npm ci included.
    const steps = again.output.filter((l) => /^(\[\d+\/\d+\] )?STEP \d+\/\d+: (?!FROM)/.test(l)).length;
    expect(steps).to.equal(10);
    const cached = again.output.filter((l) => /^--> Using cache/.test(l)).length;
    expect(cached).to.equal(steps);
  });

  it('holds exactly the production dependencies: its node_modules is what npm ls --omit=dev lists', async () => {
    const inImage = await buildah.withRootfs(first.ref, async (rootfs) =>
      installedPackages(join(rootfs, 'app')),
    );
    const wanted = await productionTree();
    expect(wanted.size).to.be.greaterThan(10);
    expect(Object.fromEntries(inImage)).to.deep.equal(Object.fromEntries(wanted));
    for (const dev of ['mocha', 'typescript', 'node', 'chai', '@biomejs/biome', 'c8', 'fast-check']) {
      expect(
        [...inImage.values()].some((id) => id.startsWith(`${dev}@`)),
        dev,
      ).to.equal(false);
    }
  });

  it('holds the sources, package.json and node_modules in /app, and nothing else of the repository', async () => {
    const app = await buildah.withRootfs(first.ref, async (rootfs) => ({
      top: readdirSync(join(rootfs, 'app')).sort(),
      src: readdirSync(join(rootfs, 'app', 'src'), { recursive: true })
        .map(String)
        .sort(),
    }));
    expect(app.top).to.deep.equal(['node_modules', 'package.json', 'src']);
    expect(app.src).to.deep.equal(readdirSync(join(ROOT, 'src'), { recursive: true }).map(String).sort());
  });

  it('runs node directly, in exec form, as 65532, in production mode', () => {
    expect(config.User).to.equal('65532:65532');
    expect(config.Entrypoint).to.deep.equal([
      'node',
      '--max-old-space-size=384',
      '--max-semi-space-size=2',
      'src/main.ts',
    ]);
    // The base's CMD (node) is dropped with the new entrypoint: the container's argv is exactly it.
    expect(config.Cmd ?? []).to.deep.equal([]);
    expect(config.WorkingDir).to.equal('/app');
    expect(config.Env).to.include('NODE_ENV=production');
  });

  it("starts from the image's own files: as 65532, the entry point loads every import and prints --help", async () => {
    const ids = await buildah.runIn(first.ref, [
      'node',
      '-p',
      '[process.getuid(), process.getgid()].join(":")',
    ]);
    expect(ids.trim()).to.equal('65532:65532');
    const help = await buildah.runIn(first.ref, ['node', 'src/main.ts', '--help']);
    expect(help).to.contain('--leader-elect');
  });
});
