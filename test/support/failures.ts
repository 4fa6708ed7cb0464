/**
 * Whether a suite's own control plane should keep its logs: anything in the suite failed, a test
 * or a hook. Asked from the suite's `after` hook. `this.currentTest` there names only the last
 * test, and a failed `before` (a plane that did not come up) is no test at all.
 */
import type Mocha from 'mocha';

interface Runnables {
  tests: Mocha.Runnable[];
  suites: Runnables[];
  _beforeAll: Mocha.Runnable[];
  _beforeEach: Mocha.Runnable[];
  _afterEach: Mocha.Runnable[];
}

function failedIn(suite: Runnables): boolean {
  const own = [...suite.tests, ...suite._beforeAll, ...suite._beforeEach, ...suite._afterEach];
  return own.some((r) => r.state === 'failed') || suite.suites.some(failedIn);
}

/** Call as `suiteFailed(this)` inside `after(function () { ... })`. */
export function suiteFailed(ctx: Mocha.Context): boolean {
  const suite = ctx.test?.parent as unknown as Runnables | undefined;
  return suite ? failedIn(suite) : false;
}
