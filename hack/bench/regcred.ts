/**
 * regcred as the benchmark runs it: a separate process started with exactly the image's command
 * line (the Dockerfile's ENTRYPOINT flags), leader-elected, with its health endpoints on a free
 * port; and the benchmark's patient polling.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { eventually } from '../../test/support/wait.ts';

const ROOT = join(dirname(new URL(import.meta.url).pathname), '..', '..');

export interface Regcred {
  child: ChildProcess;
  log: string[];
  health: string;
  spawnedAt: number;
}

/**
 * The image's command line, from the Dockerfile's ENTRYPOINT: the V8 flags users get.
 * REGCRED_BENCH_NODE_FLAGS="..." replaces them, to try others.
 */
export function imageNodeFlags(): string[] {
  if (process.env.REGCRED_BENCH_NODE_FLAGS !== undefined)
    return process.env.REGCRED_BENCH_NODE_FLAGS.split(/\s+/).filter(Boolean);
  const line = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('ENTRYPOINT '));
  const argv = JSON.parse(line!.slice('ENTRYPOINT '.length)) as string[];
  return argv.slice(1, argv.indexOf('src/main.ts'));
}

/** Starts regcred with `kubeconfig` as its identity; resolves once it logged its endpoints. */
export async function startRegcred(kubeconfig: string, podNamespace: string): Promise<Regcred> {
  const spawnedAt = performance.now();
  const child = spawn(
    process.execPath,
    [
      ...imageNodeFlags(),
      // REGCRED_BENCH_PROFILE=<dir>: a CPU profile of each regcred process, for chasing a missed figure.
      ...(process.env.REGCRED_BENCH_PROFILE
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.REGCRED_BENCH_PROFILE}`]
        : []),
      join(ROOT, 'src', 'main.ts'),
      '--leader-elect',
      '--health-probe-bind-address=127.0.0.1:0',
    ],
    {
      env: { PATH: process.env.PATH, KUBECONFIG: kubeconfig, POD_NAMESPACE: podNamespace },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const log: string[] = [];
  const collect = (c: Buffer) => log.push(...c.toString().split('\n').filter(Boolean));
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const health = await poll('regcred to log its endpoints', () => {
    const line = log.find((l) => l.includes('"message":"serving"'));
    return line ? (JSON.parse(line).healthProbes as string) : undefined;
  });
  return { child, log, health, spawnedAt };
}

/** Milliseconds from spawn until `/readyz` answered 200, once it leads. */
export async function readyAndLeading(r: Regcred, what = ''): Promise<number> {
  const ready = await poll(`regcred ready${what}`, async () =>
    (await httpStatus(`http://${r.health}/readyz`)) === 200 ? performance.now() - r.spawnedAt : undefined,
  );
  await poll(
    `regcred leading${what}`,
    () => r.log.some((l) => l.includes('"message":"became leader"')) || undefined,
  );
  return ready;
}

export async function stopRegcred(r: Regcred): Promise<number> {
  const t = performance.now();
  r.child.kill('SIGTERM');
  await new Promise((resolve) => r.child.once('exit', resolve));
  return performance.now() - t;
}

/** `eventually`, with the benchmark's patience: 10 minutes, checked every 50 ms (readiness is timed by it). */
export function poll<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
): Promise<T> {
  return eventually(what, probe, { timeoutMs: 600_000, intervalMs: 50 });
}

export function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN;
}
