/**
 * `npm run local`: a real local Kubernetes control plane for trying regcred out. Builds it the
 * first time, prints how to use it, and stays up until Ctrl-C, which leaves nothing behind.
 */
import { ControlPlane, ControlPlaneError, stopOnInterrupt, streamProgress } from './controlplane/index.ts';

const progress = streamProgress(process.stderr, '[local] ');
try {
  const plane = await ControlPlane.start({ progress });
  stopOnInterrupt(plane);
  const kubectlDir = plane.binaries.kubectl.slice(0, -'/kubectl'.length);
  process.stdout.write(
    [
      '',
      `A local Kubernetes control plane is running at ${plane.server}.`,
      'Use it from another terminal:',
      '',
      `  export KUBECONFIG=${plane.admin.path}`,
      `  export PATH=${kubectlDir}:$PATH   # kubectl ${plane.binaries.origin === kubectlDir ? 'built for regcred' : `from ${plane.binaries.origin}`}`,
      '  kubectl get namespaces',
      '',
      `Component logs: ${plane.logsDir}`,
      'Press Ctrl-C to stop it; nothing is left behind.',
      '',
    ].join('\n'),
  );
  // Keep running until a signal arrives; report a component that dies meanwhile.
  setInterval(async () => {
    const failures = await plane.failures();
    if (failures.length > 0) {
      const kept = await plane.stop({ keepLogs: true });
      progress.note(`${failures.join('\n')}\nlogs kept in ${kept}`);
      process.exit(1);
    }
  }, 2000);
} catch (err) {
  progress.note(err instanceof ControlPlaneError ? err.message : String((err as Error).stack ?? err));
  process.exit(1);
}
