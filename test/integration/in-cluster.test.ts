/**
 * regcred as platform teams run it, on a control plane of its own with the real node and no
 * operator of the test suite beside it: the image built from the Dockerfile with `npm run image`,
 * pushed to the node's registry, and installed three times, as users install it: `kubectl apply -k`
 * of config/default with only the image overridden (a kustomization of the user's own), then the
 * Helm chart with the README's commands, with Helm 4 and then with Helm 3 (the Helm 3 pass runs
 * only what depends on the installer: install, leader, sample, upgrade, uninstall). Each install
 * is judged as platform teams judge an operator: its Pods come up and stay up, one leads, the
 * sample converges through in-cluster config, logs and metrics answer, the hardened Pod spec holds
 * in the running container, a deleted leader hands over within 5 s, the PodDisruptionBudget
 * refuses a second eviction, a rolling update never has two leaders, and uninstalling in order
 * leaves the cluster as it was.
 *
 * The registry serves the pushed image to anyone on a read-only listener (`publicHost`), as a
 * public image registry does: config/default carries no pull Secret.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { resolveHelm } from '../../controlplane/binaries.ts';
import { ControlPlane, NODE_NAME, stopOnInterrupt, streamProgress } from '../../controlplane/index.ts';
import { KubeClient } from '../../src/runtime/kube.ts';
import { suiteFailed } from '../support/failures.ts';
import {
  ElectionObserver,
  httpsGet,
  isReady,
  leaseHolder,
  NAMESPACE,
  type Pod,
  portForward,
  readyPods,
  regcredPods,
  seriesValue,
} from '../support/incluster.ts';
import { eventually } from '../support/wait.ts';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const TAGS = ['in-cluster-1', 'in-cluster-2'] as const;
const TENANTS = ['acme-build', 'acme-web', ...Array.from({ length: 8 }, (_, i) => `acme-extra-${i}`)];
const RC = '/apis/regcred.dev/v1alpha1/registrycredentials';
const progress = streamProgress(process.stderr, '[in-cluster] ');
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The README's Helm commands (its "Helm" section's first sh block), in order. */
function readmeHelmCommands(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = /^### Helm\n([\s\S]*?)(?=^##)/m.exec(readme)?.[1] ?? '';
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  return block
    .split('\n')
    .map((l) => l.replace(/(^|\s)#.*$/, '').trim())
    .filter(Boolean);
}

interface Installer {
  name: string;
  /**
   * Only what depends on the installer: install, one leader, the sample, upgrade, uninstall. The
   * running operator's own checks (logs, metrics, Pod spec, failover, evictions) are the same
   * objects' as another installer's, already checked there.
   */
  lifecycleOnly?: boolean;
  install(tag: string): Promise<void>;
  upgrade(tag: string): Promise<void>;
  /** After the RegistryCredentials are gone: everything else, as the docs say. */
  uninstall(): Promise<void>;
  /** What it installs, rendered, as YAML (for the leftover check). */
  render(tag: string): Promise<string>;
}

describe('regcred in the cluster, on the real node', function () {
  this.timeout(10 * 60_000);
  let plane: ControlPlane | undefined;
  let untie: (() => void) | undefined;
  let client: KubeClient;
  let env: NodeJS.ProcessEnv;
  /** For Helm 4 and Helm 3: a folder whose `helm` is that Helm, once it is built. */
  const helmDirs: Record<3 | 4, Promise<string>> = {} as Record<3 | 4, Promise<string>>;
  let repository: string;
  const figures: string[] = [];

  const sh = async (command: string, timeoutMs = 180_000, extraEnv: NodeJS.ProcessEnv = {}) => {
    try {
      return (
        await execFileAsync('/bin/sh', ['-c', command], {
          cwd: ROOT,
          env: { ...env, ...extraEnv },
          timeout: timeoutMs,
        })
      ).stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      throw new Error(`${command} failed: ${e.stderr ?? ''}${e.stdout ?? ''}`);
    }
  };
  const kubectl = async (...args: string[]) => {
    try {
      return (
        await execFileAsync(plane!.binaries.kubectl, args, { env, timeout: 180_000, maxBuffer: 16 << 20 })
      ).stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      throw new Error(`kubectl ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}`);
    }
  };

  before(async function () {
    this.timeout(20 * 60_000);
    // helm's first build (minutes) runs while the kustomize install is tested; the Helm pass awaits
    // it. Helm 3's (≈ 50 packages more) follows it.
    helmDirs[4] = resolveHelm({ progress }).then(dirname);
    helmDirs[3] = helmDirs[4].then(async () => {
      const dir = mkdtempSync(join(tmpdir(), 'regcred-helm3-'));
      symlinkSync(await resolveHelm({ progress }, 3), join(dir, 'helm'));
      return dir;
    });
    for (const dir of Object.values(helmDirs)) dir.catch(() => {});
    plane = await ControlPlane.start({ node: true, progress, readyTimeoutMs: 120_000 });
    untie = stopOnInterrupt(plane);
    client = new KubeClient(plane.admin.kubeConfig);
    env = {
      ...process.env,
      KUBECONFIG: plane.admin.path,
      PATH: `${dirname(plane.binaries.kubectl)}:${process.env.PATH}`,
    };
    // Pushed as a user pushes, with the documented command: credentials in a docker config, the
    // registry's CA in a cert dir.
    const registry = plane.node!.registry;
    const password = `push-${Date.now().toString(36)}`;
    await registry.setUser('regcred-push', password);
    const work = mkdtempSync(join(tmpdir(), 'regcred-push-'));
    mkdirSync(join(work, 'certs'));
    writeFileSync(join(work, 'certs', 'ca.crt'), readFileSync(join(plane.dir, 'pki', 'ca.crt')));
    writeFileSync(join(work, 'auth.json'), registry.dockerConfigJson('regcred-push', password));
    for (const tag of TAGS) {
      const started = Date.now();
      const out = await sh(
        `npm run --silent image -- --local-base --tag ${tag} --push ${registry.host} --cert-dir ${join(work, 'certs')}`,
        15 * 60_000,
        { REGISTRY_AUTH_FILE: join(work, 'auth.json') },
      );
      figures.push(
        `npm run image --tag ${tag}: ${seconds(Date.now() - started)}; ${out.trim().replaceAll('\n', '; ')}`,
      );
    }
    repository = `${registry.publicHost}/regcred`;
    const manifest = await httpsGet(
      `https://${registry.publicHost}/v2/regcred/manifests/${TAGS[0]}`,
      undefined,
      {
        accept: 'application/vnd.oci.image.manifest.v1+json',
      },
    );
    const layers = (JSON.parse(manifest.body) as { layers: { size: number }[] }).layers;
    figures.push(
      `image compressed: ${(layers.reduce((n, l) => n + l.size, 0) / 1e6).toFixed(1)} MB in ${layers.length} layers`,
    );
  });

  after(async function () {
    this.timeout(120_000);
    for (const f of figures) progress.note(f);
    untie?.();
    await plane?.stop({ keepLogs: suiteFailed(this) });
  });

  const kustomize: Installer = {
    name: 'kubectl apply -k with config/default, only the image overridden',
    async install(tag) {
      await kubectl('apply', '-k', overlay(tag));
    },
    async upgrade(tag) {
      await kubectl('apply', '-k', overlay(tag));
    },
    async uninstall() {
      await kubectl('delete', '-k', overlay(TAGS[1]), '--wait=true', '--timeout=180s');
    },
    render: (tag) => kubectl('kustomize', overlay(tag)),
  };

  /** A kustomization of the user's own: config/default, with the image pointed at their registry. */
  function overlay(tag: string): string {
    const dir = join(tmpdir(), `regcred-overlay-${process.pid}-${tag}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      [
        'apiVersion: kustomize.config.k8s.io/v1beta1',
        'kind: Kustomization',
        'resources:',
        `  - ${relative(dir, join(ROOT, 'config', 'default'))}`,
        'images:',
        '  - name: ghcr.io/regcred/regcred',
        `    newName: ${repository}`,
        `    newTag: ${tag}`,
        '',
      ].join('\n'),
    );
    return dir;
  }

  const helmCommands = readmeHelmCommands();
  const helmLine = (prefix: string) => {
    const line = helmCommands.find((c) => c.startsWith(prefix));
    if (!line) throw new Error(`README "Helm" has no \`${prefix} …\` command`);
    return line;
  };
  /** The README's Helm commands run with `helm` on the PATH being Helm `major`. */
  const helmInstaller = (major: 3 | 4): Installer => {
    const withHelm = async () => ({ PATH: `${await helmDirs[major]}:${env.PATH}` });
    const helmSh = async (command: string) => sh(command, 180_000, await withHelm());
    return {
      name:
        major === 4
          ? 'the Helm chart, with the README commands'
          : 'the Helm chart with Helm 3, with the README commands',
      lifecycleOnly: major === 3,
      async install(tag) {
        expect(await helmSh('helm version --short')).to.match(new RegExp(`^v${major}\\.`));
        await helmSh(
          `${helmLine('helm install')} --set image.repository=${repository} --set image.tag=${tag}`,
        );
      },
      async upgrade(tag) {
        const line = helmLine('helm upgrade');
        expect(line).to.match(/--set image\.tag=\S+/);
        await helmSh(line.replace(/--set image\.tag=\S+/, `--set image.tag=${tag}`));
      },
      async uninstall() {
        // From helm uninstall on: what the README says to run after the RegistryCredentials are gone.
        for (const line of helmCommands.slice(helmCommands.indexOf(helmLine('helm uninstall'))))
          await helmSh(line);
      },
      render: (tag) =>
        helmSh(
          `helm template regcred charts/regcred --namespace ${NAMESPACE} --set image.repository=${repository} --set image.tag=${tag}`,
        ),
    };
  };

  /** Of everything the installs create, what exists now (`kind/name` lines). */
  async function leftovers(installers: Installer[]): Promise<string[]> {
    const file = join(tmpdir(), `regcred-rendered-${process.pid}.yaml`);
    writeFileSync(file, (await Promise.all(installers.map((i) => i.render(TAGS[0])))).join('\n---\n'));
    return (await kubectl('get', '-f', file, '--ignore-not-found', '-o', 'name')).split('\n').filter(Boolean);
  }

  let initial: string[];
  it('starts with nothing of regcred installed', async () => {
    // The chart renders the same objects (render-chart.test.ts); helm may still be building.
    initial = await leftovers([kustomize]);
    expect(initial).to.deep.equal([]);
  });

  const INSTALLERS = [kustomize, helmInstaller(4), helmInstaller(3)];
  for (const installer of INSTALLERS) {
    describe(installer.name, () => {
      let observer: ElectionObserver;

      before(() => {
        observer = new ElectionObserver(client, 'kubectl', env);
        observer.start();
      });
      after(async () => observer?.stop());

      it('installs, and both replicas become Running and Ready: the kubelet runs the real probes', async () => {
        const started = Date.now();
        await installer.install(TAGS[0]);
        const pods = await readyPods(client);
        figures.push(`${installer.name}: install → both replicas Ready in ${seconds(Date.now() - started)}`);
        for (const pod of pods) {
          expect(pod.spec.nodeName).to.equal(NODE_NAME);
          expect(pod.spec.containers[0]!.image).to.equal(`${repository}:${TAGS[0]}`);
          expect(pod.status?.containerStatuses?.[0]?.restartCount).to.equal(0);
        }
        // Pulled from the registry without credentials, as from a public registry.
        const pulls = (await plane!.node!.registry.pulls()).filter((p) => p.repository === 'regcred');
        expect(pulls.some((p) => p.reference === TAGS[0] && p.user === '')).to.equal(true);
      });

      it('has one leader: it holds the Lease, the other replica is a candidate', async () => {
        const pods = await readyPods(client);
        const holder = await eventually(
          'a Pod holds the Lease',
          async () => (await leaseHolder(client)) || undefined,
        );
        const leaders = pods.filter((p) => holder.startsWith(`${p.metadata.name}_`));
        expect(leaders.map((p) => p.metadata.name)).to.have.length(1);
        await eventually('the leader logged it', () => observer.leader() === leaders[0]!.metadata.name);
        for (const p of pods) {
          await eventually(`${p.metadata.name} runs as a candidate`, () =>
            observer.lines.some(
              (l) => l.pod === p.metadata.name && l.message === 'running as a candidate for leadership',
            ),
          );
        }
      });

      it('converges the sample RegistryCredential through the in-cluster config', async () => {
        await kubectl('apply', '-k', join(ROOT, 'config', 'samples'));
        for (const ns of TENANTS.slice(2)) {
          await client
            .create('/api/v1/namespaces', { metadata: { name: ns, labels: { tenant: 'acme' } } })
            .catch((err: { code?: number }) => {
              if (err.code !== 409) throw err; // the second install finds the first one's tenants
            });
        }
        await eventually(
          'acme-registry is Ready with every tenant synced',
          async () => {
            const rc = await client.get<{
              status?: { synced?: string; conditions?: { type: string; status: string }[] };
            }>(`${RC}/acme-registry`);
            return (
              rc.status?.synced === `${TENANTS.length}/${TENANTS.length}` &&
              rc.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
            );
          },
          { timeoutMs: 60_000 },
        );
        for (const ns of TENANTS) {
          const sa = await client.get<{ imagePullSecrets?: { name: string }[] }>(
            `/api/v1/namespaces/${ns}/serviceaccounts/default`,
          );
          expect(sa.imagePullSecrets, ns).to.deep.include({ name: 'acme-registry' });
        }
        const unselected = await client.get(`/api/v1/namespaces/globex/secrets/acme-registry`).then(
          () => 'there',
          () => 'absent',
        );
        expect(unselected).to.equal('absent');
      });

      if (!installer.lifecycleOnly)
        it("serves the leader's logs through kubectl logs, every line JSON", async () => {
          const leader = observer.leader()!;
          const log = await kubectl('logs', '-n', NAMESPACE, leader, '-c', 'manager');
          const lines = log.split('\n').filter(Boolean);
          expect(lines.length).to.be.greaterThan(3);
          for (const line of lines) {
            const parsed = JSON.parse(line) as Record<string, unknown>;
            expect(parsed).to.include.keys('level', 'message', 'timestamp');
          }
          expect(lines.some((l) => JSON.parse(l).message === 'became leader')).to.equal(true);
        });

      if (!installer.lifecycleOnly)
        it('answers /metrics through kubectl port-forward to a token bound to the metrics-reader role, and refuses others', async () => {
          await kubectl('create', 'serviceaccount', 'scraper', '-n', NAMESPACE);
          await kubectl('create', 'serviceaccount', 'stranger', '-n', NAMESPACE);
          await kubectl(
            'create',
            'clusterrolebinding',
            'regcred-test-scraper',
            '--clusterrole=regcred-metrics-reader',
            `--serviceaccount=${NAMESPACE}:scraper`,
          );
          const token = async (sa: string) => (await kubectl('create', 'token', sa, '-n', NAMESPACE)).trim();
          const [scraper, stranger] = [await token('scraper'), await token('stranger')];
          const pods = await readyPods(client);
          const leader = observer.leader();
          try {
            for (const pod of pods) {
              const forward = await portForward('kubectl', env, pod.metadata.name, 8443);
              try {
                const url = `https://127.0.0.1:${forward.localPort}/metrics`;
                const ok = await eventually('the scrape answers', async () => {
                  const r = await httpsGet(url, scraper);
                  if (r.status !== 200) throw new Error(`${r.status}: ${r.body.slice(0, 300)}`);
                  return r;
                });
                const master = seriesValue(
                  ok.body,
                  'leader_election_master_status{name="regcred-system/regcred"}',
                );
                expect(master, pod.metadata.name).to.equal(pod.metadata.name === leader ? 1 : 0);
                expect((await httpsGet(url)).status).to.equal(401);
                expect((await httpsGet(url, stranger)).status).to.equal(403);
              } finally {
                forward.stop();
              }
            }
          } finally {
            await kubectl('delete', 'clusterrolebinding', 'regcred-test-scraper');
            await kubectl('delete', 'serviceaccount', 'scraper', 'stranger', '-n', NAMESPACE);
          }
        });

      if (!installer.lifecycleOnly)
        it('holds its hardened Pod spec in the running container: read-only root, non-root, no new privileges, no capabilities, seccomp', async () => {
          const [pod] = await readyPods(client);
          const name = pod!.metadata.name;
          const c = pod!.spec.containers[0]!;
          expect(c.livenessProbe?.httpGet).to.deep.equal({
            path: '/healthz',
            port: 'health',
            scheme: 'HTTP',
          });
          expect(c.readinessProbe?.httpGet).to.deep.equal({
            path: '/readyz',
            port: 'health',
            scheme: 'HTTP',
          });
          const inPod = async (script: string) =>
            JSON.parse(
              await kubectl('exec', '-n', NAMESPACE, name, '-c', 'manager', '--', 'node', '-e', script),
            );
          // The operator is PID 1: its own /proc status, read from a process exec'd beside it.
          const facts = await inPod(`
          const fs = require('node:fs');
          const status = Object.fromEntries(fs.readFileSync('/proc/1/status', 'utf8').split('\\n')
            .filter(Boolean).map((l) => l.split(/:\\s*/)));
          const attempt = (p) => { try { fs.writeFileSync(p, 'x'); return 'written'; } catch (e) { return e.code; } };
          console.log(JSON.stringify({
            uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(),
            writes: ['/app/x', '/tmp/x', '/x'].map(attempt),
            status, pid1: fs.readFileSync('/proc/1/cmdline', 'utf8').split('\\0').filter(Boolean),
          }));`);
          expect({ uid: facts.uid, gid: facts.gid }).to.deep.equal({ uid: 65532, gid: 65532 });
          expect(facts.status.Uid.split(/\s+/)).to.deep.equal(['65532', '65532', '65532', '65532']);
          expect(facts.status.Gid.split(/\s+/)).to.deep.equal(['65532', '65532', '65532', '65532']);
          expect(facts.writes).to.deep.equal(['EROFS', 'EROFS', 'EROFS']);
          expect(facts.status.NoNewPrivs).to.equal('1');
          for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'])
            expect(facts.status[set], set).to.equal('0000000000000000');
          // RuntimeDefault: runc loads containerd's default profile as a seccomp filter (mode 2).
          expect(facts.status.Seccomp).to.equal('2');
          figures.push(
            `seccomp on this node: Seccomp ${facts.status.Seccomp}, ${facts.status.Seccomp_filters} filter(s)`,
          );
          // Exec form: PID 1 is node itself, with the image's arguments, so SIGTERM reaches it.
          expect(facts.pid1.slice(1)).to.deep.equal([
            '--max-old-space-size=384',
            '--max-semi-space-size=2',
            'src/main.ts',
            ...(c.args ?? []),
          ]);
          expect(facts.pid1[0]).to.match(/(^|\/)node$/);
          // The kubelet ran both probes, and they passed.
          await eventually(
            'kubelet recorded successful liveness and readiness probes of the Pod',
            async () => {
              const res = await plane!.get(`/api/v1/nodes/${NODE_NAME}/proxy/metrics/probes`);
              const ours = res.body
                .split('\n')
                .filter((l) => l.includes(`pod="${name}"`) && l.includes('result="successful"'));
              return ['Liveness', 'Readiness'].every((t) =>
                ours.some((l) => l.includes(`probe_type="${t}"`) && Number(l.split(' ').pop()) > 0),
              );
            },
            { timeoutMs: 60_000, intervalMs: 1000 },
          );
        });

      if (!installer.lifecycleOnly)
        it('fails over when the leader Pod is deleted: SIGTERM releases the Lease, the follower leads within 5 s, and a rotation made meanwhile reaches every namespace', async () => {
          const old = observer.leader()!;
          const follower = (await readyPods(client)).find((p) => p.metadata.name !== old)!.metadata.name;
          const gapsBefore = observer.gaps().length;
          await kubectl('delete', 'pod', '-n', NAMESPACE, old, '--wait=false');
          await rotate('rotated-during-failover');
          await eventually('the follower leads', () => observer.leader() === follower, { timeoutMs: 30_000 });
          await observer.settled();
          const gaps = observer.gaps().slice(gapsBefore);
          expect(gaps).to.have.length(1);
          figures.push(`${installer.name}: failover leaderless ${seconds(gaps[0]!)}`);
          expect(gaps[0]).to.be.at.most(5000);
          const says = (m: string) => observer.lines.find((l) => l.pod === old && l.message === m);
          expect(says('stopping')?.signal).to.equal('SIGTERM');
          expect(says('released the lease')).to.exist;
          await eventually('the deleted Pod exited 0', () => observer.exitCodes.get(old) === 0);
          await everyCopyHolds('rotated-during-failover');
          await readyPods(client);
        });

      if (!installer.lifecycleOnly)
        it('keeps one replica through voluntary evictions: the PodDisruptionBudget refuses the second while one is down', async () => {
          await eventually('the budget allows one disruption', async () => {
            const pdb = await client.get<{ status?: { disruptionsAllowed?: number } }>(
              `/apis/policy/v1/namespaces/${NAMESPACE}/poddisruptionbudgets/regcred`,
            );
            return pdb.status?.disruptionsAllowed === 1;
          });
          const [first, second] = await readyPods(client);
          const evict = (pod: Pod) =>
            client
              .create(`/api/v1/namespaces/${NAMESPACE}/pods/${pod.metadata.name}/eviction`, {
                apiVersion: 'policy/v1',
                kind: 'Eviction',
                metadata: { name: pod.metadata.name, namespace: NAMESPACE },
              })
              .then(
                () => 201,
                (err: { code?: number }) => err.code ?? 0,
              );
          expect(await evict(first!)).to.equal(201);
          expect(await evict(second!)).to.equal(429);
          const remaining = await client.get<Pod>(
            `/api/v1/namespaces/${NAMESPACE}/pods/${second!.metadata.name}`,
          );
          expect(isReady(remaining)).to.equal(true);
          await readyPods(client);
          expect(() => observer.gaps()).not.to.throw();
        });

      it('rolls to a new image tag without two leaders, each leaderless gap at most 5 s', async () => {
        const gapsBefore = observer.gaps().length;
        const started = Date.now();
        await installer.upgrade(TAGS[1]);
        const pods = await eventually(
          'both replicas run the new tag, Ready',
          async () => {
            const all = await regcredPods(client);
            return all.length === 2 &&
              all.every((p) => isReady(p) && p.spec.containers[0]!.image.endsWith(`:${TAGS[1]}`))
              ? all
              : undefined;
          },
          { timeoutMs: 180_000, intervalMs: 250 },
        );
        // The successor logs `became leader` up to a retry period (2 s) after the last old Pod left.
        await eventually(
          'a Pod of the new tag leads',
          () => pods.some((p) => p.metadata.name === observer.leader()),
          {
            timeoutMs: 30_000,
          },
        );
        await observer.settled();
        const gaps = observer.gaps().slice(gapsBefore);
        figures.push(
          `${installer.name}: rolling update in ${seconds(Date.now() - started)}, ${gaps.length} handover(s), ` +
            `leaderless ${gaps.map(seconds).join(' + ') || '0 s'}`,
        );
        expect(gaps.length).to.be.within(1, 2);
        for (const g of gaps) expect(g).to.be.at.most(5000);
        await rotate('rotated-after-update');
        await everyCopyHolds('rotated-after-update');
      });

      it('uninstalls in order (RegistryCredentials first, while the operator runs) and leaves the cluster as before', async () => {
        await kubectl('delete', 'registrycredentials', '--all', '--wait=true', '--timeout=60s');
        for (const ns of TENANTS) {
          const sa = await client.get<{ imagePullSecrets?: unknown[] }>(
            `/api/v1/namespaces/${ns}/serviceaccounts/default`,
          );
          expect(sa.imagePullSecrets ?? [], ns).to.deep.equal([]);
        }
        await installer.uninstall();
        await eventually(
          'regcred-system is gone',
          () =>
            client.get(`/api/v1/namespaces/${NAMESPACE}`).then(
              () => false,
              () => true,
            ),
          { timeoutMs: 120_000 },
        );
        expect(await leftovers(INSTALLERS)).to.deep.equal(initial);
        expect(() => observer.gaps()).not.to.throw();
      });
    });
  }

  /** Changes the sample source's password (at the registry it names, which nothing pulls from). */
  async function rotate(password: string): Promise<void> {
    const auth = Buffer.from(`acme-bot:${password}`).toString('base64');
    await client.mergePatch(`/api/v1/namespaces/${NAMESPACE}/secrets/acme-pull`, {
      stringData: {
        '.dockerconfigjson': JSON.stringify({
          auths: { 'registry.acme.example': { username: 'acme-bot', password, auth } },
        }),
      },
    });
  }

  async function everyCopyHolds(password: string): Promise<void> {
    for (const ns of TENANTS) {
      await eventually(
        `the copy in ${ns} holds the rotated password`,
        async () => {
          const copy = await client.get<{ data?: Record<string, string> }>(
            `/api/v1/namespaces/${ns}/secrets/acme-registry`,
          );
          const doc = JSON.parse(
            Buffer.from(copy.data?.['.dockerconfigjson'] ?? '', 'base64').toString() || '{}',
          );
          return doc.auths?.['registry.acme.example']?.password === password;
        },
        { timeoutMs: 60_000 },
      );
    }
  }
});
