/**
 * The control plane module's parts that need no cluster: version pinning, binary resolution and
 * its errors, the build lock, process supervision and progress output.
 */
import { chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  acquireLock,
  componentFingerprint,
  fingerprint,
  GO_MODULE_DIR,
  kubernetesVersion,
  missingBinaries,
  resolveBinaries,
  resolveKubeletCreds,
  versionLdflags,
} from '../../controlplane/binaries.ts';
import { ControlPlaneError } from '../../controlplane/errors.ts';
import { Component, isProcessAlive } from '../../controlplane/process.ts';
import { formatDuration, type Progress, streamProgress } from '../../controlplane/progress.ts';
import { eventually } from '../support/wait.ts';

function recordingProgress(): Progress & { lines: string[] } {
  const lines: string[] = [];
  return { lines, note: (m) => lines.push(m), status: (m) => lines.push(m), done: (m) => lines.push(m) };
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'regcred-unit-'));
}

async function fakeBinaries(dir: string, names: string[]): Promise<void> {
  for (const n of names) {
    await writeFile(join(dir, n), '#!/bin/sh\n');
    await chmod(join(dir, n), 0o755);
  }
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('control plane binaries', () => {
  it('reads the one pinned Kubernetes version from the Go module', async () => {
    expect(await kubernetesVersion()).to.equal('v1.36.3');
    const goMod = await readFile(join(GO_MODULE_DIR, 'go.mod'), 'utf8');
    const stagingReplaces = goMod.match(/=> k8s\.io\/\S+ v0\.36\.3$/gm) ?? [];
    expect(stagingReplaces.length).to.be.greaterThan(25);
  });

  it('stamps the version into both version packages', () => {
    const flags = versionLdflags('v1.36.3');
    for (const pkg of ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version']) {
      expect(flags).to.contain(`-X ${pkg}.gitVersion=v1.36.3`);
      expect(flags).to.contain(`-X ${pkg}.gitMajor=1`);
      expect(flags).to.contain(`-X ${pkg}.gitMinor=36`);
    }
  });

  it('uses KUBEBUILDER_ASSETS when it holds all four binaries', async () => {
    const dir = await tempDir();
    await fakeBinaries(dir, ['kube-apiserver', 'etcd', 'kube-controller-manager', 'kubectl']);
    const progress = recordingProgress();
    const bins = await resolveBinaries({ progress, env: { KUBEBUILDER_ASSETS: dir, PATH: '' } });
    expect(bins.kubeApiserver).to.equal(join(dir, 'kube-apiserver'));
    expect(bins.kubeControllerManager).to.equal(join(dir, 'kube-controller-manager'));
    expect(progress.lines).to.deep.equal([]);
  });

  it('says why an envtest folder without the controller-manager is not used, then needs Go to build', async () => {
    const assets = await tempDir();
    await fakeBinaries(assets, ['kube-apiserver', 'etcd']);
    const progress = recordingProgress();
    const err = await rejection(
      resolveBinaries({
        progress,
        env: { KUBEBUILDER_ASSETS: assets, XDG_CACHE_HOME: await tempDir(), PATH: '/nonexistent' },
      }),
    );
    expect(progress.lines[0]).to.contain('lacks kube-controller-manager, kubectl');
    expect(err).to.be.instanceOf(ControlPlaneError);
    expect(err.message).to.contain('Go is needed to build the local control plane');
    expect(err.message).to.contain('KUBEBUILDER_ASSETS');
  });

  it('reports a failed build with the log to read, and leaves no binary behind', async () => {
    const module = await tempDir();
    await writeFile(
      join(module, 'go.mod'),
      'module broken\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v1.36.3\n',
    );
    await writeFile(join(module, 'go.sum'), '');
    const cache = await tempDir();
    const err = await rejection(
      resolveBinaries({
        progress: recordingProgress(),
        goModDir: module,
        env: { ...process.env, XDG_CACHE_HOME: cache, GOFLAGS: '-mod=readonly' },
      }),
    );
    const logPath = join(cache, 'regcred', 'k8s', 'v1.36.3', 'build.log');
    expect(err).to.be.instanceOf(ControlPlaneError);
    expect(err.message).to.match(/^building kube-apiserver failed: .*; read /);
    expect(err.message).to.contain(logPath);
    expect(await readFile(logPath, 'utf8')).to.contain('go.sum');
    expect(await missingBinaries(join(cache, 'regcred', 'k8s', 'v1.36.3', 'bin'))).to.have.length(4);
  });
});

/**
 * A Go module and a `go` that "builds" a package by writing a script to `-o` and logging the
 * package, so the cache's bookkeeping is tested without compiling anything.
 */
async function fakeGoModule(): Promise<{
  module: string;
  env: NodeJS.ProcessEnv;
  built: () => Promise<string[]>;
}> {
  const module = await tempDir();
  await writeFile(join(module, 'go.mod'), 'module fake\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v1.36.3\n');
  await writeFile(join(module, 'go.sum'), '');
  await mkdir(join(module, 'cmd', 'kubelet-creds'), { recursive: true });
  await writeFile(join(module, 'cmd', 'kubelet-creds', 'main.go'), 'package main\n');
  const bin = await tempDir();
  const log = join(bin, 'built.log');
  await writeFile(
    join(bin, 'go'),
    `#!/bin/sh
[ "$1" = build ] || exit 0
for a; do [ "$prev" = -o ] && out=$a; prev=$a; done
echo "$prev" >> ${log}
printf '#!/bin/sh\\n' > "$out" && chmod +x "$out"
`,
  );
  await chmod(join(bin, 'go'), 0o755);
  return {
    module,
    env: { XDG_CACHE_HOME: await tempDir(), PATH: `${bin}:/usr/bin:/bin` },
    built: async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean),
  };
}

describe('the binary cache', () => {
  it('builds kubelet-creds into the cache even when KUBEBUILDER_ASSETS serves the control plane', async () => {
    const { module, env, built } = await fakeGoModule();
    const assets = await tempDir();
    await fakeBinaries(assets, ['kube-apiserver', 'etcd', 'kube-controller-manager', 'kubectl']);
    const options = {
      progress: recordingProgress(),
      goModDir: module,
      env: { ...env, KUBEBUILDER_ASSETS: assets },
    };
    expect((await resolveBinaries(options)).kubectl).to.equal(join(assets, 'kubectl'));
    const path = await resolveKubeletCreds(options);
    expect(path).to.equal(join(env.XDG_CACHE_HOME!, 'regcred', 'k8s', 'v1.36.3', 'bin', 'kubelet-creds'));
    expect(await resolveKubeletCreds(options)).to.equal(path);
    expect(await built()).to.deep.equal(['./cmd/kubelet-creds']);
    expect(options.progress.lines[0]).to.match(/^building kubelet-creds \(Kubernetes v1\.36\.3\) into /);
  });

  it('rebuilds kubelet-creds alone when its sources change, everything when go.mod does', async () => {
    const { module, env, built } = await fakeGoModule();
    const options = { progress: recordingProgress(), goModDir: module, env };
    await resolveBinaries(options);
    await resolveKubeletCreds(options);
    const controlPlane = [
      'k8s.io/kubernetes/cmd/kube-apiserver',
      'k8s.io/kubernetes/cmd/kube-controller-manager',
      'k8s.io/kubernetes/cmd/kubectl',
      'go.etcd.io/etcd/server/v3',
    ];
    expect(await built()).to.deep.equal([...controlPlane, './cmd/kubelet-creds']);

    await writeFile(join(module, 'cmd', 'kubelet-creds', 'main.go'), 'package main // changed\n');
    await resolveBinaries(options);
    await resolveKubeletCreds(options);
    expect(await built()).to.have.length(6);
    expect((await built())[5]).to.equal('./cmd/kubelet-creds');

    await writeFile(join(module, 'go.sum'), 'changed\n');
    await resolveBinaries(options);
    await resolveKubeletCreds(options);
    expect((await built()).slice(6)).to.deep.equal([...controlPlane, './cmd/kubelet-creds']);
  });

  it('keeps a cache written before per-binary fingerprints for the binaries it holds', async () => {
    const { module, env, built } = await fakeGoModule();
    const versionDir = join(env.XDG_CACHE_HOME!, 'regcred', 'k8s', 'v1.36.3');
    await mkdir(join(versionDir, 'bin'), { recursive: true });
    await fakeBinaries(join(versionDir, 'bin'), [
      'kube-apiserver',
      'etcd',
      'kube-controller-manager',
      'kubectl',
    ]);
    const legacy = { version: 'v1.36.3', fingerprint: await fingerprint(module) };
    await writeFile(join(versionDir, 'build-info.json'), JSON.stringify(legacy));
    const options = { progress: recordingProgress(), goModDir: module, env };
    await resolveBinaries(options);
    await resolveKubeletCreds(options);
    await resolveBinaries(options);
    expect(await built()).to.deep.equal(['./cmd/kubelet-creds']);
  });

  it("fingerprints the sources of the module's own commands, subfolders included", async () => {
    const { module } = await fakeGoModule();
    const before = await fingerprint(module, 'cmd/kubelet-creds');
    expect(await fingerprint(module)).to.not.equal(before);
    await mkdir(join(module, 'cmd', 'kubelet-creds', 'internal'));
    await writeFile(join(module, 'cmd', 'kubelet-creds', 'internal', 'x.go'), 'package internal\n');
    expect(await fingerprint(module, 'cmd/kubelet-creds')).to.not.equal(before);
  });

  it('fingerprints every folder a command is built from: one folder alone as before, a shared package too', async () => {
    const { module } = await fakeGoModule();
    const alone = await fingerprint(module, 'cmd/kubelet-creds');
    expect(await fingerprint(module, ['cmd/kubelet-creds'])).to.equal(alone);
    await mkdir(join(module, 'internal'));
    await writeFile(join(module, 'internal', 'shared.go'), 'package internal\n');
    const both = await fingerprint(module, ['cmd/kubelet-creds', 'internal']);
    expect(both).to.not.equal(alone);
    await writeFile(join(module, 'internal', 'shared.go'), 'package internal // changed\n');
    expect(await fingerprint(module, ['cmd/kubelet-creds', 'internal'])).to.not.equal(both);
  });

  it("fingerprints a binary's own link flags: a changed flag rebuilds it, none leaves the fingerprint as it was", async () => {
    const { module } = await fakeGoModule();
    const c = { name: 'helm3', pkg: 'helm.sh/helm/v3/cmd/helm', moduleDir: module, kubernetesLdflags: false };
    expect(await componentFingerprint(c, module)).to.equal(await fingerprint(module));
    const minor20 = await componentFingerprint({ ...c, ldflags: '-X a.k8sVersionMinor=20' }, module);
    const minor37 = await componentFingerprint({ ...c, ldflags: '-X a.k8sVersionMinor=37' }, module);
    expect(minor20).to.not.equal(await fingerprint(module));
    expect(minor37).to.not.equal(minor20);
  });
});

describe('the build lock', () => {
  it('makes a second builder wait until the first releases it', async () => {
    const lock = join(await tempDir(), 'build.lock');
    const release = await acquireLock(lock, recordingProgress());
    const waiting = recordingProgress();
    let acquired = false;
    const second = acquireLock(lock, waiting).then((r) => {
      acquired = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(acquired).to.equal(false);
    expect(waiting.lines[0]).to.contain(`pid ${process.pid}`);
    await release();
    await (await second)();
    expect(acquired).to.equal(true);
  });

  it('takes over a lock whose owner died', async () => {
    const lock = join(await tempDir(), 'build.lock');
    await mkdir(lock);
    await writeFile(join(lock, 'pid'), '2147483646');
    const release = await acquireLock(lock, recordingProgress());
    expect(await readFile(join(lock, 'pid'), 'utf8')).to.equal(String(process.pid));
    await release();
  });
});

describe('a control plane component process', () => {
  it('fails its readiness wait at once when it exits, naming the cause and the log', async () => {
    const log = join(await tempDir(), 'c.log');
    const c = new Component(
      'broken',
      '/bin/sh',
      ['-c', 'echo "starting"; echo "fatal: no such flag --x" >&2; exit 3'],
      log,
    );
    c.start();
    const started = Date.now();
    const err = await rejection(c.waitUntil('it listens', async () => false, 30_000));
    expect(Date.now() - started).to.be.lessThan(5000);
    expect(err.message).to.equal(
      `broken exited before it listens (code 3): fatal: no such flag --x; read ${log}`,
    );
    expect(c.unexpectedExit).to.deep.equal({ code: 3, signal: null });
  });

  it('names a port clash as such', async () => {
    const log = join(await tempDir(), 'c.log');
    const c = new Component(
      'etcd',
      '/bin/sh',
      ['-c', 'echo "listen tcp 127.0.0.1:2379: bind: address already in use" >&2; exit 1'],
      log,
    );
    c.start();
    const err = await rejection(c.waitUntil('it is healthy', async () => false, 30_000));
    expect(err.message).to.contain('port clash: listen tcp 127.0.0.1:2379: bind: address already in use');
  });

  it('gives up at the deadline with the log to read', async () => {
    const log = join(await tempDir(), 'c.log');
    const c = new Component('slow', '/bin/sh', ['-c', 'sleep 30'], log);
    c.start();
    const err = await rejection(c.waitUntil('it answers', async () => false, 300));
    expect(err.message).to.equal(`slow did not become ready (it answers) within 0.3s; read ${log}`);
    await c.stop();
  });

  it('stops the whole process group, children included', async () => {
    const dir = await tempDir();
    const pidFile = join(dir, 'child.pid');
    const c = new Component(
      'parent',
      '/bin/sh',
      ['-c', `sleep 60 & echo $! > ${pidFile}; wait`],
      join(dir, 'c.log'),
    );
    c.start();
    const parent = c.pid!;
    const childPid = await eventually('the shell started its child', async () => {
      const pid = Number.parseInt(await readFile(pidFile, 'utf8'), 10);
      return pid > 0 ? pid : undefined;
    });
    expect(isProcessAlive(childPid)).to.equal(true);
    await c.stop(1000);
    expect(isProcessAlive(parent)).to.equal(false);
    expect(isProcessAlive(childPid)).to.equal(false);
    expect(c.unexpectedExit).to.equal(undefined);
  });
});

describe('progress output', () => {
  it('formats durations as a newcomer reads them', () => {
    expect(formatDuration(4_400)).to.equal('4s');
    expect(formatDuration(754_000)).to.equal('12m34s');
  });

  it('prints statuses at most every 15 s to a log, but notes always', () => {
    const written: string[] = [];
    const stream = { isTTY: false, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream;
    const p = streamProgress(stream, '> ');
    p.status('1/10');
    p.status('2/10');
    p.note('hello');
    p.done('built');
    p.status('3/10');
    expect(written).to.deep.equal(['> 1/10\n', '> hello\n', '> built\n', '> 3/10\n']);
  });
});
