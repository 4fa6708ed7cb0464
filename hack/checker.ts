/**
 * The invariant checker as a process of its own, against any cluster regcred runs on (e.g. the one
 * `npm run local` prints the KUBECONFIG of): `node hack/checker.ts [--kubeconfig=PATH]
 * [--bound-seconds=60] [--minutes=N]`. It reads only through the API, prints each violation as a
 * JSON line the moment it finds it, and `N violations` when it stops (after N minutes, or on
 * Ctrl-C); exits 1 on any. See test/support/checker.ts for the invariants.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../src/runtime/kube.ts';
import { Checker } from '../test/support/checker.ts';
import { flags } from './args.ts';

const values = flags(
  {
    kubeconfig: { type: 'string' },
    'bound-seconds': { type: 'string', default: '60' },
    minutes: { type: 'string' },
  },
  `node hack/checker.ts [--kubeconfig=PATH] [--bound-seconds=60] [--minutes=N]
  Checks regcred's invariants on a cluster through its API, printing each violation as a JSON
  line when found and \`N violations\` when it stops (after N minutes, or on Ctrl-C); exits 1 on any.
  kubeconfig     the cluster (default: $KUBECONFIG, then ~/.kube/config)
  bound-seconds  how long a difference may last before it counts as a violation
  minutes        stop after this long (default: at Ctrl-C)
`,
);
const config = new KubeConfig();
const path = values.kubeconfig ?? process.env.KUBECONFIG;
if (path) config.loadFromFile(path);
else config.loadFromDefault();
const checker = new Checker(new KubeClient(config), {
  boundMs: Number(values['bound-seconds']) * 1000,
  onViolation: (v) => process.stdout.write(`${JSON.stringify(v)}\n`),
});
checker.start();
const stopped = new Promise<void>((resolve) => {
  process.once('SIGINT', () => resolve());
  process.once('SIGTERM', () => resolve());
  if (values.minutes) setTimeout(resolve, Number(values.minutes) * 60_000);
});
await stopped;
const violations = await checker.stop();
process.stdout.write(
  `${checker.rounds.ok} snapshots (${checker.rounds.failed} unreadable); ${violations.length} violations\n`,
);
process.exit(violations.length > 0 ? 1 : 0);
