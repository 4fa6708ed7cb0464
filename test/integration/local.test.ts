/**
 * `npm run local` as a user runs it (a separate process beside the shared control plane): it prints
 * a working kubeconfig and kubectl, Ctrl-C leaves nothing behind, and after a crash the next start
 * cleans up what the crashed run left.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { cleanLeftovers } from '../../controlplane/leftovers.ts';
import { isProcessAlive } from '../../controlplane/process.ts';
import { eventually } from '../support/wait.ts';

const run = promisify(execFile);
const localScript = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'hack', 'local.ts');

interface LocalRun {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startLocal(): LocalRun {
  const child = spawn(process.execPath, [localScript], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    { timeoutMs: 90_000 },
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

describe('npm run local', function () {
  this.timeout(120_000);

  it('runs regcred with its samples, shows them, and Ctrl-C stops everything and leaves nothing behind', async () => {
    const local = startLocal();
    const { kubeconfig, kubectl, dir, pids } = await readyLocal(local);
    // etcd, kube-apiserver, kube-controller-manager and the operator.
    expect(pids).to.have.length(4);
    const operators = operatorPids(kubeconfig);
    expect(operators).to.have.length(1);
    expect(pids).to.include(operators[0]);
    expect(local.output()).to.match(
      /acme-registry\s+regcred-system\/acme-pull\s+acme-registry\s+2\/2\s+True\s+Synced/,
    );

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

    local.child.kill('SIGINT');
    expect(await local.exited).to.equal(130);
    expect(pids.filter(isProcessAlive)).to.deep.equal([]);
    expect(existsSync(dir)).to.equal(false);
  });

  it('after a crash, the next start removes the processes and files the crashed run left', async () => {
    const local = startLocal();
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
});
