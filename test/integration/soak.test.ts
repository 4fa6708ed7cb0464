/**
 * The soak's short form for CI: a fixed seed, a minute and a half of changes and faults on a
 * control plane of its own, the invariant checker throughout (`npm run soak` runs the long form).
 */
import { expect } from 'chai';
import { soak } from '../support/soak.ts';

const SEED = 1515;

describe('soak, short form', function () {
  this.timeout(10 * 60_000);

  it(`a 1.5-minute soak with seed ${SEED} ends converged with 0 violations`, async () => {
    const report = await soak({
      minutes: 1.5,
      seed: SEED,
      namespaces: 60,
      log: (line) => process.stdout.write(`      ${line}\n`),
    });
    process.stdout.write(
      `      actions ${JSON.stringify(report.actions)}; faults ${JSON.stringify(report.faults)}; worst convergence ${(report.worstConvergenceMs / 1000).toFixed(1)} s; RSS ${report.rss.startMiB} → ${report.rss.endMiB} MiB over ${report.rss.minutes} min (longest-lived process)\n`,
    );
    expect(Object.values(report.actions).reduce((a, b) => a + b, 0)).to.be.greaterThan(20);
    expect(Object.keys(report.faults)).to.not.be.empty;
    expect(report.violations).to.deep.equal([]);
  });
});
