/**
 * regcred as a separate process, started from its production entry point as a user (or the image)
 * runs it, for leader election, signal and endpoint tests. Its JSON log lines are parsed as they
 * come, so tests await what the process says instead of sleeping.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { eventually } from './wait.ts';

export const MAIN = join(import.meta.dirname, '..', '..', 'src', 'main.ts');

export interface LogLine {
  level: string;
  message: string;
  timestamp: string;
  [key: string]: unknown;
}

export interface RegcredProcess {
  child: ChildProcess;
  lines: LogLine[];
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
  /** The first log line whose message matches, awaited. */
  waitFor(message: string | RegExp, timeoutMs?: number): Promise<LogLine>;
  /** The bound addresses the process logged: `{ healthProbes, metrics }`. */
  endpoints(): Promise<{ healthProbes: string; metrics: string }>;
}

export function startRegcred(
  kubeconfig: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  main = MAIN,
): RegcredProcess {
  const child = spawn(process.execPath, [main, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, KUBECONFIG: kubeconfig, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  let partial = '';
  const onData = (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as LogLine);
      } catch {
        lines.push({ level: 'raw', message: p, timestamp: new Date().toISOString() });
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const waitFor = (message: string | RegExp, timeoutMs = 30_000) =>
    eventually(
      `regcred logs "${message}"`,
      () => {
        const hit = lines.find((l) =>
          typeof message === 'string' ? l.message === message : message.test(l.message),
        );
        if (!hit && child.exitCode !== null)
          throw new Error(`regcred exited: ${lines.map((l) => l.message).join(' | ')}`);
        return hit;
      },
      { timeoutMs, intervalMs: 20 },
    );
  return {
    child,
    lines,
    exited,
    waitFor,
    async endpoints() {
      const line = await waitFor('serving');
      return { healthProbes: String(line.healthProbes), metrics: String(line.metrics) };
    },
  };
}

/** Stops a process if it still runs (SIGKILL), for `after` hooks. */
export async function killQuietly(p: RegcredProcess | undefined): Promise<void> {
  if (p && p.child.exitCode === null && p.child.signalCode === null) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

/** Runs `path` with `input` on stdin; its stdout, or an error naming its exit and stderr. */
export function pipeThrough(path: string, args: string[], input: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const child = spawn(path, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => {}); // an early exit is reported by 'close' below
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`${path} exited with ${signal ?? code}: ${Buffer.concat(err).toString()}`));
    });
    child.stdin.end(input);
  });
}
