/**
 * The machine as it is with no local node running, for the leave-nothing-behind comparisons:
 * another run's node (one per machine) is waited out first, so that its processes and mounts are
 * not taken for this machine's own.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_STATE_DIR, machineSnapshot } from '../../controlplane/index.ts';
import { eventually } from './wait.ts';

export async function machineWithoutNode(
  tools: Parameters<typeof machineSnapshot>[0],
): Promise<Record<string, string[]>> {
  await eventually('no other run holds the local node', () => !existsSync(join(HOST_STATE_DIR, 'lock')), {
    timeoutMs: 8 * 60_000,
  });
  return machineSnapshot(tools);
}
