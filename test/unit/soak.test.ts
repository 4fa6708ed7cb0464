/** The soak's schedule is reproducible from its seed. */
import { expect } from 'chai';
import { prng, weighted } from '../support/soak.ts';

describe('soak schedule', () => {
  it('gives the same numbers for the same seed, and others for another', () => {
    const draw = (seed: number) => {
      const r = prng(seed);
      return Array.from({ length: 5 }, () => r());
    };
    expect(draw(1515)).to.deep.equal(draw(1515));
    expect(draw(1515)).to.not.deep.equal(draw(1516));
    for (const x of draw(7)) expect(x).to.be.within(0, 1);
  });

  it('picks by cumulative weight', () => {
    const entries: [string, number][] = [
      ['a', 1],
      ['b', 3],
    ];
    expect(weighted(entries, 0)[0]).to.equal('a');
    expect(weighted(entries, 0.99)[0]).to.equal('a');
    expect(weighted(entries, 1)[0]).to.equal('b');
    expect(weighted(entries, 3.99)[0]).to.equal('b');
  });
});
