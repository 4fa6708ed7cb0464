/**
 * One real control plane per test run, shared by every integration test.
 *
 * Loaded by mocha as a global fixture (`--require`): setup builds (first time) and starts the
 * control plane, teardown stops it and keeps the component logs when a test failed. Tests get it
 * with `cluster()`.
 */
import type Mocha from 'mocha';
import { ControlPlane, stopOnInterrupt, streamProgress } from '../../controlplane/index.ts';

let plane: ControlPlane | undefined;
let untie: (() => void) | undefined;
let anyFailed = false;

export async function mochaGlobalSetup(): Promise<void> {
  plane = await ControlPlane.start({ progress: streamProgress() });
  untie = stopOnInterrupt(plane);
}

export async function mochaGlobalTeardown(): Promise<void> {
  if (!plane) return;
  untie?.();
  const kept = await plane.stop({ keepLogs: anyFailed });
  if (kept) process.stderr.write(`[controlplane] tests failed; component logs kept in ${kept}\n`);
}

export const mochaHooks = {
  afterEach(this: Mocha.Context) {
    if (this.currentTest?.state === 'failed') anyFailed = true;
  },
};

/** The shared control plane; only available when mocha runs with this fixture (`npm test`). */
export function cluster(): ControlPlane {
  if (!plane)
    throw new Error(
      'no control plane: integration tests run with the fixture test/support/cluster.ts (npm test)',
    );
  return plane;
}
