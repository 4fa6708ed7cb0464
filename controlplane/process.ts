/**
 * One control plane component as a child process.
 *
 * Guarantees:
 * - The child runs in its own process group (so a stop reaches anything it forks) and writes its
 *   output straight into its log file, which therefore survives the parent.
 * - `stop()` sends SIGTERM, then SIGKILL after the grace period, and resolves once the process is gone.
 * - `waitUntil` never hangs: it fails as soon as the component exits, or at its deadline, with a
 *   message naming the cause and the log.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile, readFile } from 'node:fs/promises';
import { ControlPlaneError } from './errors.ts';

/**
 * Runs `command` to its end and resolves what it wrote on stdout; `input`, if given, is its stdin.
 * Rejects with a ControlPlaneError naming the command and the last line of its stderr.
 */
export function output(command: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => reject(new ControlPlaneError(`${command} could not run: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) return resolve(Buffer.concat(out).toString());
      const last = Buffer.concat(err).toString().trim().split('\n').pop();
      reject(new ControlPlaneError(`${command} ${args.join(' ')} failed: ${last}`));
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** True while `pid` runs; a zombie (exited, not yet reaped by a parent or init) counts as gone. */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false; // 0 and negatives address process groups
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Component {
  readonly name: string;
  readonly logPath: string;
  private readonly command: string;
  private readonly args: readonly string[];
  private readonly env: NodeJS.ProcessEnv;
  private child: ChildProcess | undefined;
  private exitPromise: Promise<Exit> | undefined;
  private exitInfo: Exit | undefined;
  private stopping = false;

  /** `env` adds to (or overrides) this process's environment. */
  constructor(
    name: string,
    command: string,
    args: readonly string[],
    logPath: string,
    env: NodeJS.ProcessEnv = {},
  ) {
    this.name = name;
    this.command = command;
    this.args = args;
    this.logPath = logPath;
    this.env = env;
  }

  get pid(): number | undefined {
    return this.exitInfo ? undefined : this.child?.pid;
  }

  /** Set when the process ended without being asked to. */
  get unexpectedExit(): Exit | undefined {
    return this.stopping ? undefined : this.exitInfo;
  }

  start(): void {
    if (this.child && !this.exitInfo) throw new Error(`${this.name} is already running`);
    const fd = openSync(this.logPath, 'a');
    try {
      this.exitInfo = undefined;
      this.stopping = false;
      const child = spawn(this.command, this.args, {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: {
          ...process.env,
          NO_PROXY: '127.0.0.1,localhost,10.201.0.1',
          no_proxy: '127.0.0.1,localhost,10.201.0.1',
          ...this.env,
        },
      });
      this.child = child;
      this.exitPromise = new Promise((resolve) => {
        child.on('error', (err) => {
          this.exitInfo = { code: -1, signal: null };
          void appendFile(this.logPath, `failed to start ${this.command}: ${err.message}\n`).catch(() => {});
          resolve(this.exitInfo);
        });
        child.on('exit', (code, signal) => {
          this.exitInfo = { code, signal };
          resolve(this.exitInfo);
        });
      });
      child.unref();
    } finally {
      closeSync(fd);
    }
  }

  async stop(graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (!child || this.exitInfo || child.pid === undefined) return;
    this.stopping = true;
    signalGroup(child.pid, 'SIGTERM');
    const killTimer = setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), graceMs);
    await this.exitPromise;
    clearTimeout(killTimer);
    // The group may hold children of the component; never leave them behind, and return only
    // once they are gone (a signal is delivered asynchronously).
    signalGroup(child.pid, 'SIGKILL');
    const deadline = Date.now() + 5000;
    while (groupAlive(child.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  /** Kills at once, synchronously; for process exit handlers. */
  killNow(): void {
    if (this.child?.pid !== undefined && !this.exitInfo) {
      this.stopping = true;
      signalGroup(this.child.pid, 'SIGKILL');
    }
  }

  /** Polls `ready` until it returns true; fails at once if the process exits. */
  async waitUntil(what: string, ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.exitInfo) throw await this.exitError(`exited before ${what}`);
      if (await ready().catch(() => false)) return;
      if (Date.now() > deadline) {
        throw new ControlPlaneError(
          `${this.name} did not become ready (${what}) within ${timeoutMs / 1000}s; read ${this.logPath}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** An error describing an exit, with the most telling line of the log. */
  async exitError(context: string): Promise<ControlPlaneError> {
    const exit = this.exitInfo;
    const how = exit?.signal ? `signal ${exit.signal}` : `code ${exit?.code}`;
    const log = await readFile(this.logPath, 'utf8').catch(() => '');
    const clash = log.split('\n').find((l) => /address already in use/i.test(l));
    const cause = clash
      ? `port clash: ${clash.trim().slice(0, 400)}`
      : (
          log
            .trim()
            .split('\n')
            .reverse()
            .find((l) => /error|fatal|failed|panic/i.test(l)) ?? ''
        )
          .trim()
          .slice(0, 400);
    return new ControlPlaneError(
      `${this.name} ${context} (${how})${cause ? `: ${cause}` : ''}; read ${this.logPath}`,
    );
  }
}

/** Whether any process of group `pgid` still runs (zombies, which only wait to be reaped, do not count). */
export function groupAlive(pgid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
    } catch {
      // Gone meanwhile.
    }
  }
  return false;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  if (!Number.isInteger(pid) || pid <= 1) return; // never our own group, never everything
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}
