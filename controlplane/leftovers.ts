/**
 * Bookkeeping that lets a control plane start clean up after an earlier run that was interrupted
 * (Ctrl-C during start, a crashed or SIGKILLed test process).
 *
 * Each control plane owns a work directory `<tmp>/regcred-controlplane/<id>` with `state.json`:
 * the PID of the owning Node process and the PIDs of its components and tracked processes. A
 * directory whose owner is dead is a leftover: its processes are killed (only if their command
 * line or environment still names that directory, so a reused PID is never hit) and the directory
 * is removed.
 */

import { readFileSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isProcessAlive } from './process.ts';

export const WORK_ROOT = join(tmpdir(), 'regcred-controlplane');
export const KEPT_LOGS_ROOT = join(tmpdir(), 'regcred-controlplane-logs');
const KEPT_LOGS_LIMIT = 10;

export interface State {
  owner: number;
  components: Record<string, number>;
}

export async function writeState(dir: string, state: State): Promise<void> {
  await writeFile(join(dir, 'state.json'), JSON.stringify(state));
}

/** Whether the process's command line or environment names `text` (so a reused PID is never hit). */
function processMentions(pid: number, text: string): boolean {
  for (const file of ['cmdline', 'environ']) {
    try {
      if (readFileSync(`/proc/${pid}/${file}`, 'utf8').includes(text)) return true;
    } catch {
      // Gone, or not ours to read.
    }
  }
  return false;
}

/** Removes leftovers of dead owners; returns how many were cleaned up. */
export async function cleanLeftovers(): Promise<number> {
  let cleaned = 0;
  const entries = await readdir(WORK_ROOT).catch(() => [] as string[]);
  for (const id of entries) {
    const dir = join(WORK_ROOT, id);
    let state: State;
    try {
      state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8'));
    } catch {
      // No state yet: either a start in progress (owner alive, id carries its PID) or an early crash.
      const owner = Number.parseInt(id.split('-')[0] ?? '', 10);
      if (Number.isInteger(owner) && isProcessAlive(owner)) continue;
      state = { owner, components: {} };
    }
    if (isProcessAlive(state.owner)) continue;
    for (const pid of Object.values(state.components)) {
      if (pid > 1 && processMentions(pid, dir)) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
    }
    await rm(dir, { recursive: true, force: true });
    cleaned++;
  }
  await trimKeptLogs();
  return cleaned;
}

/** Kept log folders are for reading after a failure; only the newest few are kept. */
async function trimKeptLogs(): Promise<void> {
  const entries = (await readdir(KEPT_LOGS_ROOT).catch(() => [] as string[])).sort();
  for (const old of entries.slice(0, Math.max(0, entries.length - KEPT_LOGS_LIMIT))) {
    await rm(join(KEPT_LOGS_ROOT, old), { recursive: true, force: true });
  }
}
