/**
 * `npm run soak -- --minutes=N [--seed=S] [--namespaces=K]`: regcred under a randomized, seeded
 * schedule of changes and faults on a control plane of its own, with the invariant checker
 * running throughout (test/support/soak.ts). Prints the seed first (to repeat a run), then what
 * ran, the worst convergence time, the operator's RSS, and `N violations` last; exits 1 on any.
 */
import { soak } from '../test/support/soak.ts';
import { flags } from './args.ts';

const USAGE = `npm run soak -- [--minutes=60] [--seed=S] [--namespaces=100]
  Randomized changes and faults against regcred on a control plane of its own, with the
  invariant checker throughout; prints the seed first and \`N violations\` last, exits 1 on any.
  minutes     how long the schedule runs
  seed        repeats a run (default: a random one, printed)
  namespaces  tenant namespaces at the start
`;
const values = flags(
  {
    minutes: { type: 'string', default: '60' },
    seed: { type: 'string' },
    namespaces: { type: 'string', default: '100' },
  },
  USAGE,
);
const minutes = Number(values.minutes);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const namespaces = Number(values.namespaces);
if (!(minutes > 0) || !Number.isInteger(seed) || !(namespaces > 0)) {
  process.stderr.write(`--minutes and --namespaces need positive numbers, --seed an integer\n${USAGE}`);
  process.exit(2);
}
const stamp = () => new Date().toISOString().slice(11, 19);
process.stdout.write(`seed ${seed} (repeat with --seed=${seed})\n`);
const report = await soak({
  minutes,
  seed,
  namespaces,
  log: (line) => process.stdout.write(`${stamp()} ${line}\n`),
});
const list = (counts: Record<string, number>) =>
  Object.entries(counts)
    .sort()
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || 'none';
process.stdout.write(
  `${[
    `seed ${report.seed}, ${report.minutes} min, ${namespaces} namespaces at the start`,
    `actions: ${list(report.actions)}`,
    `faults: ${list(report.faults)}`,
    `worst convergence: ${(report.worstConvergenceMs / 1000).toFixed(1)} s (${report.worst ? `${report.worst.kind} ${report.worst.object}` : 'none'})`,
    `operator RSS, its longest-lived process (${report.rss.minutes} min): ${report.rss.startMiB} → ${report.rss.endMiB} MiB, open fds ${report.fds.start} → ${report.fds.end}; ${report.rss.maxMiB} MiB max of any; restarts ${report.operatorRestarts}`,
    `checker: ${report.checkerRounds.ok} snapshots (${report.checkerRounds.failed} unreadable during faults)`,
    ...report.violations.map((v) => `violation: ${v.kind} ${v.object} at ${v.at} (${v.detail})`),
    `${report.violations.length} violations`,
  ].join('\n')}\n`,
);
process.exit(report.violations.length > 0 ? 1 : 0);
