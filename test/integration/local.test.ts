/**
 * `npm run local` as a user runs it (a separate process beside the shared control plane). With the
 * local node: the sample tenant Deployment runs its private image, pulled by the sample registry
 * user; the printed lines work as pasted, a new tenant included; Ctrl-C leaves the machine exactly
 * as it was; and after a crash the next start cleans up and comes up again. Without the node
 * (`--no-node`): the control plane alone, and the same cleanup after a crash.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { machineSnapshot, resolveNodeBinaries, streamProgress } from '../../controlplane/index.ts';
import { cleanLeftovers } from '../../controlplane/leftovers.ts';
import { NODE_ROOT } from '../../controlplane/nodehost.ts';
import { isProcessAlive } from '../../controlplane/process.ts';
import { parsePulls } from '../../controlplane/registry.ts';
import { SAMPLE_APP, SAMPLE_IMAGE, SAMPLE_REGISTRY_USER } from '../../hack/local.ts';
import { machineWithoutNode } from '../support/machine.ts';
import { eventually } from '../support/wait.ts';

const run = promisify(execFile);
const localScript = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'hack', 'local.ts');

interface LocalRun {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startLocal(...args: string[]): LocalRun {
  const child = spawn(process.execPath, [localScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout?.on('data', (c: Buffer) => (text += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (text += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => text, exited };
}

/** What the running `npm run local` printed: its kubeconfig, kubectl folder and work directory. */
async function readyLocal(local: LocalRun) {
  const printed = await eventually(
    'npm run local prints how to use the cluster',
    () => {
      const out = local.output();
      const kubeconfig = /export KUBECONFIG=(\S+)/.exec(out)?.[1];
      const path = /export PATH=([^:\s]+):\$PATH/.exec(out)?.[1];
      const logs = /Component logs: (\S+)/.exec(out)?.[1];
      if (local.child.exitCode !== null) throw new Error(`npm run local exited: ${out}`);
      return kubeconfig && path && logs
        ? { kubeconfig, kubectl: join(path, 'kubectl'), dir: dirname(logs) }
        : undefined;
    },
    { timeoutMs: 150_000 },
  );
  const state = JSON.parse(readFileSync(join(printed.dir, 'state.json'), 'utf8')) as {
    components: Record<string, number>;
  };
  return { ...printed, pids: Object.values(state.components) };
}

/** PIDs of regcred operator processes started with this kubeconfig. */
function operatorPids(kubeconfig: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
        return cmdline.includes('src/main.ts') && environ.includes(`KUBECONFIG=${kubeconfig}`);
      } catch {
        return false;
      }
    });
}

/** The lines `npm run local` printed to paste into another terminal (indented by two spaces). */
function printedLines(output: string): string[] {
  const lines = output.split('\n');
  const from = lines.findIndex((l) => l.startsWith('  export KUBECONFIG='));
  const to = lines.findIndex((l, i) => i > from && l.trim() === '');
  return lines.slice(from, to).map((l) => l.slice(2));
}

async function sh(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env };
  delete env.KUBECONFIG;
  try {
    const { stdout, stderr } = await run('/bin/sh', ['-ec', script], { env, timeout: 150_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function stopLocal(local: LocalRun, pids: number[], dir: string): Promise<void> {
  local.child.kill('SIGINT');
  expect(await local.exited, local.output()).to.equal(130);
  expect(pids.filter(isProcessAlive)).to.deep.equal([]);
  expect(existsSync(dir)).to.equal(false);
}

describe('npm run local', function () {
  this.timeout(180_000);
  const running: LocalRun[] = [];
  const startTracked = (...args: string[]) => {
    const local = startLocal(...args);
    running.push(local);
    return local;
  };

  // A run a failed test left: stopped as Ctrl-C does, so the next test finds the machine free.
  afterEach(async function () {
    this.timeout(60_000);
    for (const local of running.splice(0)) {
      if (local.child.exitCode !== null || local.child.signalCode !== null) continue;
      local.child.kill('SIGINT');
      await local.exited;
    }
  });

  describe('with the local node', function () {
    // Locally another run's node may be waited out first (one node per machine).
    this.timeout(10 * 60_000);
    let tools: Awaited<ReturnType<typeof resolveNodeBinaries>>;
    let machineBefore: Record<string, string[]>;

    before(async function () {
      this.timeout(20 * 60_000);
      // Built here when this is the first test that needs the node (a cold machine).
      tools = await resolveNodeBinaries({ progress: streamProgress() });
    });

    it('runs the tenant Deployment on its private image; the printed lines try a new tenant; Ctrl-C leaves the machine as it was', async () => {
      machineBefore = await machineWithoutNode(tools);
      const started = Date.now();
      const local = startTracked();
      const { kubeconfig, kubectl, dir, pids } = await readyLocal(local);
      const out = local.output();
      process.stdout.write(`      (npm run local printed its state after ${Date.now() - started} ms)\n`);
      expect(out).to.match(
        /acme-registry\s+regcred-system\/acme-pull\s+acme-registry\s+2\/2\s+True\s+Synced/,
      );
      expect(out).to.match(new RegExp(`\\n\\s+${SAMPLE_APP.name}-[a-z0-9]+-[a-z0-9]+\\s+1/1\\s+Running\\s`));
      const image = new RegExp(`(127\\.0\\.0\\.1:\\d+/${SAMPLE_IMAGE.repository}:${SAMPLE_IMAGE.tag})`).exec(
        out,
      )?.[1];
      expect(image, out).to.be.a('string');

      // The tenant's Pod was pulled from the registry by the sample user, through regcred's copy.
      const { stdout: pod } = await run(kubectl, [
        '--kubeconfig',
        kubeconfig,
        'get',
        'pods',
        '-n',
        SAMPLE_APP.namespace,
        '-o',
        'jsonpath={.items[0].spec.imagePullSecrets[*].name} {.items[0].spec.containers[0].image}',
      ]);
      expect(pod).to.equal(`acme-registry ${image}`);
      const pulls = parsePulls(readFileSync(join(NODE_ROOT, 'registry', 'pulls.log'), 'utf8'));
      expect(pulls.map((p) => `${p.user} ${p.repository}`)).to.include(
        `${SAMPLE_REGISTRY_USER} ${SAMPLE_IMAGE.repository}`,
      );

      // Every printed line, pasted as one block: a new tenant's Pod runs, a non-tenant's is refused.
      const lines = printedLines(out);
      expect(lines.join('\n')).to.contain('kubectl create namespace acme-api');
      const ran = await sh(lines.join('\n'));
      expect(ran.code, `${ran.stdout}\n${ran.stderr}`).to.equal(0);
      // acme-api's Pod became Ready; globex's waited with ErrImagePull.
      expect(ran.stdout.match(/pod\/hello condition met/g)).to.have.length(2);
      const { stdout: refusal } = await run(kubectl, [
        '--kubeconfig',
        kubeconfig,
        'get',
        'pod',
        'hello',
        '-n',
        'globex',
        '-o',
        'jsonpath={.status.containerStatuses[0].state.waiting.message}',
      ]);
      expect(refusal).to.match(/401|unauthorized|authorization|basic auth/i);

      await stopLocal(local, pids, dir);
      expect(await machineSnapshot(tools)).to.deep.equal(machineBefore);
    });

    it('after a crash, the next start cleans up the node and comes up again; its Ctrl-C leaves the machine as it was', async () => {
      machineBefore = await machineWithoutNode(tools);
      const crashed = startTracked();
      const first = await readyLocal(crashed);
      crashed.child.kill('SIGKILL');
      await crashed.exited;
      // The control plane, the operator and the node outlive the killed `npm run local`...
      expect(first.pids.filter(isProcessAlive)).to.have.length(4);
      const orphans = (await machineSnapshot(tools)).processes?.join('\n') ?? '';
      for (const name of ['kubelet', 'containerd', 'kube-proxy', 'docker-registry'])
        expect(orphans).to.contain(name);

      // ...until the next start cleans up, and comes up again.
      const local = startTracked();
      const second = await readyLocal(local);
      expect(local.output()).to.contain('cleaning up a local node left by an interrupted run');
      expect(first.pids.filter(isProcessAlive)).to.deep.equal([]);
      expect(existsSync(first.dir)).to.equal(false);
      expect(local.output()).to.match(
        new RegExp(`\\n\\s+${SAMPLE_APP.name}-[a-z0-9]+-[a-z0-9]+\\s+1/1\\s+Running\\s`),
      );
      await stopLocal(local, second.pids, second.dir);
      expect(await machineSnapshot(tools)).to.deep.equal(machineBefore);
    });
  });

  describe('without a node (--no-node)', () => {
    it('runs regcred with its samples, shows them, and Ctrl-C stops everything and leaves nothing behind', async () => {
      const local = startTracked('--no-node');
      const { kubeconfig, kubectl, dir, pids } = await readyLocal(local);
      // etcd, kube-apiserver, kube-controller-manager and the operator.
      expect(pids).to.have.length(4);
      const operators = operatorPids(kubeconfig);
      expect(operators).to.have.length(1);
      expect(pids).to.include(operators[0]);
      expect(local.output()).to.match(
        /acme-registry\s+regcred-system\/acme-pull\s+acme-registry\s+2\/2\s+True\s+Synced/,
      );
      expect(printedLines(local.output()).join('\n')).not.to.contain('kubectl run');

      // The printed kubectl reaches the cluster, where the operator has done its work.
      const { stdout } = await run(kubectl, [
        '--kubeconfig',
        kubeconfig,
        'get',
        'serviceaccount',
        'default',
        '-n',
        'acme-web',
        '-o',
        'jsonpath={.imagePullSecrets[*].name}',
      ]);
      expect(stdout).to.equal('acme-registry');
      await stopLocal(local, pids, dir);
    });

    it('after a crash, the next start removes the processes and files the crashed run left', async () => {
      const local = startTracked('--no-node');
      const { dir, pids } = await readyLocal(local);

      local.child.kill('SIGKILL');
      await local.exited;
      // The components and the operator outlive the killed `npm run local`...
      expect(pids.filter(isProcessAlive)).to.have.length(4);

      // ...until the next start cleans up.
      expect(await cleanLeftovers()).to.be.at.least(1);
      await eventually('the orphaned processes are gone', () => pids.filter(isProcessAlive).length === 0);
      expect(existsSync(dir)).to.equal(false);
    });

    it('--help says what it runs and how to leave the node out', async () => {
      const { stdout } = await run(process.execPath, [localScript, '--help']);
      expect(stdout).to.contain('npm run local [-- --no-node]');
      expect(stdout).to.contain('--no-node');
    });
  });
});
