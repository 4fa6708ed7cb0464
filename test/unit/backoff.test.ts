/** The default retry policy's bound, on which recovery after a long outage depends. */
import { expect } from 'chai';
import { backoffDelay } from '../../src/runtime/backoff.ts';

describe('default backoff', () => {
  it('retries within 30 s after any number of failures (an API server unreachable for minutes)', () => {
    for (const failures of [10, 20, 100, 10_000]) {
      expect(
        backoffDelay(failures, undefined, () => 1),
        `after ${failures}`,
      ).to.be.at.most(30_000);
      expect(
        backoffDelay(failures, undefined, () => 0),
        `after ${failures}`,
      ).to.be.at.least(15_000);
    }
  });

  it('starts at about 100 ms', () => {
    expect(backoffDelay(1, undefined, () => 1)).to.equal(100);
  });
});
