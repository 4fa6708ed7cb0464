/** The reflector's watchdog bound, which the silent-watch fault scenario relies on. */
import { expect } from 'chai';
import { SILENCE_LIMIT_SECONDS, silenceLimitMs } from '../../src/runtime/reflector.ts';

describe('reflector watchdog', () => {
  it('gives up a watch silent for 90 s whatever its server-side timeout (bookmarks come each minute)', () => {
    for (const timeoutSeconds of [300, 450, 600]) expect(silenceLimitMs(timeoutSeconds)).to.equal(90_000);
    expect(SILENCE_LIMIT_SECONDS * 1000).to.be.greaterThan(60_000);
  });

  it('never waits past the server-side timeout plus a margin on a short watch', () => {
    expect(silenceLimitMs(20)).to.equal(50_000);
  });
});
