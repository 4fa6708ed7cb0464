/** The checker's clock: convergence counts only from a snapshot begun after it was asked for. */
import { expect } from 'chai';
import type { KubeClient } from '../../src/runtime/kube.ts';
import { Checker } from '../support/checker.ts';

/** A client whose lists (all empty: a converged world) answer only once `open()` is called. */
function gatedClient(): { client: KubeClient; open: () => void } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  const client = {
    get: async () => {
      await gate;
      return { items: [] };
    },
  } as unknown as KubeClient;
  return { client, open };
}

describe('the checker', () => {
  it('does not take a snapshot begun before converged() was asked as proof', async () => {
    const { client, open } = gatedClient();
    const checker = new Checker(client, { boundMs: 1000 });
    const early = checker.round();
    await new Promise((r) => setTimeout(r, 5));
    const verdict = checker.converged(500).then(
      () => 'converged',
      (err: Error) => err.message,
    );
    await new Promise((r) => setTimeout(r, 5));
    open();
    await early;
    expect(await verdict).to.match(/^not converged after 0.5s/);
  });

  it('takes the first snapshot begun after it was asked, timed to its end', async () => {
    const { client, open } = gatedClient();
    open();
    const checker = new Checker(client, { boundMs: 1000 });
    const verdict = checker.converged(2000);
    await new Promise((r) => setTimeout(r, 5));
    await checker.round();
    expect(await verdict).to.be.within(0, 2000);
  });
});
