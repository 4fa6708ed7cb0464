/**
 * Every developer tool the README names answers `--help` with its usage (exit 0) and refuses an
 * unknown flag by naming it, with the usage (exit 2): never a stack trace.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

/** Each tool, and what its usage's first line starts with. */
const TOOLS: [string, string][] = [
  ['hack/local.ts', 'npm run local'],
  ['hack/bench/run.ts', 'npm run bench'],
  ['hack/bench/pull.ts', 'node hack/bench/pull.ts'],
  ['hack/soak.ts', 'npm run soak'],
  ['hack/checker.ts', 'node hack/checker.ts'],
  ['hack/image.ts', 'usage: npm run image'],
];

async function tool(
  script: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, script), ...args], {
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('the developer tools', function () {
  this.timeout(60_000);

  for (const [script, usage] of TOOLS) {
    it(`${script}: --help prints the usage and exits 0; an unknown flag is named, with the usage, exit 2`, async () => {
      const help = await tool(script, ['--help']);
      expect(help.code, help.stderr).to.equal(0);
      expect(help.stdout.startsWith(usage), help.stdout).to.equal(true);
      const bad = await tool(script, ['--no-such-flag']);
      expect(bad.code).to.equal(2);
      expect(bad.stderr).to.contain('--no-such-flag');
      expect(bad.stderr).to.contain(usage);
      expect(bad.stderr).to.not.match(/\n\s+at /);
    });
  }
});
