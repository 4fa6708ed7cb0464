/**
 * regcred's alerts (config/prometheus/), checked by Prometheus' own promtool (`check rules`, and
 * `test rules` with the unit tests beside them), and held against what the operator really
 * exports: every series a rule reads, with the label values it matches on, is in the /metrics of a
 * regcred started from its production entry point.
 */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { load } from 'js-yaml';
import { gitopsTools, promqlSelectors, promtool, type Selector } from '../support/gitops.ts';
import { killQuietly, type RegcredProcess, startRegcred } from '../support/processes.ts';
import { eventually } from '../support/wait.ts';
import {
  deleteCredential,
  installRegcred,
  operatorConfig,
  SOURCE_NAMESPACE,
  tenantWorld,
  unique,
  waitForReady,
} from '../support/world.ts';

const DIR = join(import.meta.dirname, '..', '..', 'config', 'prometheus');
const RULES = join(DIR, 'regcred.rules.yaml');
const RULE_TESTS = join(DIR, 'regcred.rules.test.yaml');

interface Rule {
  alert: string;
  expr: string;
}
interface Groups {
  groups: { name: string; rules: Rule[] }[];
}

const ruleFile = () => load(readFileSync(RULES, 'utf8')) as Groups;

/** One sample of a Prometheus text exposition. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a text exposition (`name{a="b",…} value`); comments skipped. */
function samplesOf(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function matches(sample: Sample, selector: Selector): boolean {
  if (sample.name !== selector.metric) return false;
  return selector.matchers.every((m) => {
    const value = sample.labels[m.name] ?? '';
    const re = new RegExp(`^(?:${m.value})$`);
    if (m.type === '=') return value === m.value;
    if (m.type === '!=') return value !== m.value;
    if (m.type === '=~') return re.test(value);
    return !re.test(value);
  });
}

describe('alerts', function () {
  // The first run builds promtool and the parser helper (the README's "Alerts" has the times).
  this.timeout(900_000);
  before(async () => {
    await gitopsTools();
  });

  it('ship the same groups as a rule file and as a PrometheusRule', () => {
    const resource = load(readFileSync(join(DIR, 'prometheusrule.yaml'), 'utf8')) as {
      apiVersion: string;
      kind: string;
      spec: Groups;
    };
    expect(resource).to.deep.include({ apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule' });
    expect(resource.spec).to.deep.equal(ruleFile());
    expect(ruleFile().groups.flatMap((g) => g.rules.map((r) => r.alert))).to.deep.equal([
      'RegistryCredentialNotReady',
      'RegcredReconcileErrors',
      'RegcredInformerRestarts',
      'RegcredLeaderLost',
    ]);
  });

  it('pass promtool check rules', async () => {
    const out = await promtool('check', 'rules', '--lint=all', '--lint-fatal', RULES);
    expect(out).to.include('SUCCESS: 4 rules found');
  });

  it('pass their unit tests with promtool test rules, and a wrong expectation fails them', async () => {
    expect(await promtool('test', 'rules', RULE_TESTS)).to.include('SUCCESS');
    // The same tests with one expectation changed must fail: the unit tests do test something.
    const dir = mkdtempSync(join(tmpdir(), 'regcred-rules-'));
    copyFileSync(RULES, join(dir, 'regcred.rules.yaml'));
    const wrong = readFileSync(RULE_TESTS, 'utf8').replace('credential: broken', 'credential: fine');
    writeFileSync(join(dir, 'wrong.test.yaml'), wrong);
    const failed = await promtool('test', 'rules', join(dir, 'wrong.test.yaml')).then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(failed).to.match(/FAILED/);
  });

  describe('against a running regcred', () => {
    let p: RegcredProcess | undefined;
    before(installRegcred);
    after(async () => killQuietly(p));

    it('reads only series regcred exports, with the label values the rules match on', async () => {
      p = startRegcred((await operatorConfig()).path, [
        `--source-namespaces=${SOURCE_NAMESPACE}`,
        '--health-probe-bind-address=0',
        '--metrics-bind-address=127.0.0.1:0',
      ]);
      const { metrics } = await p.endpoints();
      await p.waitFor('running');
      // A RegistryCredential, so that its condition series exist.
      const t = unique('alerts');
      await tenantWorld(t, { ready: false });
      await waitForReady(t);

      const rules = ruleFile().groups.flatMap((g) => g.rules);
      const selectors = await promqlSelectors(rules.map((r) => r.expr));
      const scraped = await eventually('a scrape shows the credential Ready', async () => {
        const res = await fetch(metrics);
        const samples = samplesOf(await res.text());
        const ready = samples.find(
          (s) => s.labels.credential === t && s.labels.type === 'Ready' && s.labels.status === 'True',
        );
        return ready?.value === 1 ? samples : undefined;
      });
      const missing: string[] = [];
      rules.forEach((rule, i) => {
        expect(selectors[i], `${rule.alert} reads some series`).not.to.be.empty;
        for (const s of selectors[i]!) {
          if (!scraped.some((sample) => matches(sample, s)))
            missing.push(`${rule.alert}: ${s.metric}${JSON.stringify(s.matchers)}`);
        }
      });
      expect(missing, 'selectors no scraped sample matches').to.deep.equal([]);
      // The credential's own series say what its status says: Ready True, not Stalled.
      const mine = Object.fromEntries(
        scraped
          .filter((s) => s.name === 'regcred_credential_condition' && s.labels.credential === t)
          .map((s) => [`${s.labels.type}=${s.labels.status}`, s.value]),
      );
      expect(mine).to.deep.equal({
        'Ready=True': 1,
        'Ready=False': 0,
        'Ready=Unknown': 0,
        'Stalled=True': 0,
        'Stalled=False': 1,
        'Stalled=Unknown': 0,
      });
      // And a selector of a series regcred does not export would have been caught.
      expect(scraped.some((s) => matches(s, { metric: 'regcred_credential_ready', matchers: [] }))).to.equal(
        false,
      );
      await deleteCredential(t);
    });
  });
});
