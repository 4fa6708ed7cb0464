import type { ControlPlane } from './controlplane.ts';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const EXIT_CODES = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

/**
 * Ties a control plane's life to this process: on Ctrl-C (or SIGTERM/SIGHUP) it is stopped in
 * order and the process exits; on any other exit (a crash included) its processes are killed
 * synchronously and the next start removes what is left. Returns a function that unties it.
 */
export function stopOnInterrupt(plane: ControlPlane, beforeStop?: () => Promise<void>): () => void {
  let stopping = false;
  const onSignal = (signal: (typeof SIGNALS)[number]) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\n[controlplane] ${signal}: stopping the control plane\n`);
    const hardDeadline = setTimeout(() => {
      plane.killNow();
      process.exit(EXIT_CODES[signal]);
    }, 20_000);
    hardDeadline.unref();
    void (beforeStop?.() ?? Promise.resolve())
      .catch(() => {})
      .then(() => plane.stop())
      .finally(() => process.exit(EXIT_CODES[signal]));
  };
  const onExit = () => plane.killNow();
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on('exit', onExit);
  return () => {
    for (const s of SIGNALS) process.off(s, onSignal);
    process.off('exit', onExit);
  };
}
