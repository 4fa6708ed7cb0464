/**
 * Mocha's spec reporter plus one closing line, `N passed, N failed`, which CI reads.
 * Hook failures count as failures, as in mocha's own totals.
 */
import Mocha from 'mocha';

export default class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const stats = runner.stats;
      process.stdout.write(`\n${stats?.passes ?? 0} passed, ${stats?.failures ?? 0} failed\n`);
    });
  }
}
