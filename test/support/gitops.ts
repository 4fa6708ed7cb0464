/**
 * What Flux, Argo CD and Prometheus make of regcred's objects and rules, computed by their own
 * code: the tools of `controlplane/gitops`, built into the control plane cache on first use
 * (controlplane/gitopstools.ts). Each call runs one process for a whole batch.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { type GitOpsTools, resolveGitOpsTools } from '../../controlplane/gitopstools.ts';
import { streamProgress } from '../../controlplane/index.ts';
import { pipeThrough } from './processes.ts';

const run = promisify(execFile);

let tools: Promise<GitOpsTools> | undefined;

/** The tools' paths; the first call builds any that the cache lacks or that are stale. */
export function gitopsTools(): Promise<GitOpsTools> {
  tools ??= resolveGitOpsTools({ progress: streamProgress() });
  return tools;
}

/** kstatus' verdict on an object: what Flux's `wait` and `healthChecks` conclude. */
export interface KstatusVerdict {
  status: 'InProgress' | 'Failed' | 'Current' | 'Terminating' | 'NotFound' | 'Unknown';
  message: string;
}

export interface ArgoHealth {
  status?: string;
  message?: string;
}

/** What Argo CD shows (`health`) and what the script itself answered (`script`). */
export interface ArgoAnswer {
  health: ArgoHealth;
  script?: ArgoHealth;
  error?: string;
}

/** Runs `path args`, feeding `lines` one per line, and returns its stdout lines (one per input). */
async function batch(path: string, args: string[], lines: string[]): Promise<string[]> {
  const stdout = await pipeThrough(path, args, lines.map((l) => `${l}\n`).join(''));
  const answers = stdout.split('\n').filter((l) => l !== '');
  if (answers.length !== lines.length)
    throw new Error(`${path} answered ${answers.length} lines for ${lines.length} inputs`);
  return answers;
}

/** kstatus `Compute` of each object, in order. */
export async function kstatus(objects: unknown[]): Promise<KstatusVerdict[]> {
  const answers = await batch(
    (await gitopsTools()).kstatus,
    [],
    objects.map((o) => JSON.stringify(o)),
  );
  return answers.map((line, i) => {
    const v = JSON.parse(line) as KstatusVerdict & { error?: string };
    if (v.error) throw new Error(`kstatus failed on object ${i}: ${v.error}`);
    return v;
  });
}

/** The Argo CD health of each object under the health script in `scriptFile`, in order. */
export async function argocdHealth(scriptFile: string, objects: unknown[]): Promise<ArgoAnswer[]> {
  const answers = await batch(
    (await gitopsTools()).argocdHealth,
    [scriptFile],
    objects.map((o) => JSON.stringify(o)),
  );
  return answers.map((line) => JSON.parse(line) as ArgoAnswer);
}

export interface Selector {
  metric: string;
  matchers: { name: string; type: '=' | '!=' | '=~' | '!~'; value: string }[];
}

/** The vector selectors of each PromQL expression, as Prometheus' parser reads them. */
export async function promqlSelectors(expressions: string[]): Promise<Selector[][]> {
  const answers = await batch(
    (await gitopsTools()).promqlSelectors,
    [],
    expressions.map((e) => JSON.stringify(e)),
  );
  return answers.map((line, i) => {
    const parsed = JSON.parse(line) as Selector[] | { error: string };
    if (!Array.isArray(parsed)) throw new Error(`${expressions[i]}: ${parsed.error}`);
    return parsed;
  });
}

/** Runs promtool; resolves with its output, rejects with it (and the exit code) on failure. */
export async function promtool(...args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run((await gitopsTools()).promtool, args);
    return stdout + stderr;
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(' ')} exited with ${e.code}: ${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}
