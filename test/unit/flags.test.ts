/**
 * Flags and their defaults.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { defaultSourceNamespace, FlagError, parseDuration, parseFlags } from '../../src/flags.ts';

describe('flags', () => {
  it('defaults the source namespace to POD_NAMESPACE, else the in-cluster namespace file, else regcred-system', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'regcred-flags-')), 'namespace');
    writeFileSync(file, 'platform\n');
    expect(defaultSourceNamespace({ POD_NAMESPACE: 'ops' }, file)).to.equal('ops');
    expect(defaultSourceNamespace({}, file)).to.equal('platform');
    expect(defaultSourceNamespace({}, '/nonexistent')).to.equal('regcred-system');
  });

  it('has sensible defaults', () => {
    expect(parseFlags([], {})).to.deep.include({
      concurrency: 32,
      logLevel: 'info',
      resyncPeriodMs: 600_000,
      stallAfterMs: 120_000,
    });
  });

  it('parses every flag', () => {
    const flags = parseFlags(
      [
        '--source-namespaces=a, b,a',
        '--concurrency=4',
        '--log-level=debug',
        '--resync-period=1h30m',
        '--stall-after=30s',
        '--kubeconfig=/k',
      ],
      {},
    );
    expect(flags).to.deep.include({
      help: false,
      kubeconfig: '/k',
      sourceNamespaces: ['a', 'b'],
      concurrency: 4,
      logLevel: 'debug',
      resyncPeriodMs: 5_400_000,
      stallAfterMs: 30_000,
    });
  });

  it('has controller-runtime defaults for leader election and endpoints, and parses them', () => {
    expect(parseFlags([], { POD_NAMESPACE: 'ops' })).to.deep.include({
      leaderElect: false,
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      leaseNamespace: 'ops',
      leaseName: 'regcred',
      healthProbeBindAddress: ':8081',
      metricsBindAddress: '0',
      metricsSecure: false,
      metricsCertDir: undefined,
    });
    const flags = parseFlags(
      [
        '--leader-elect',
        '--leader-elect-lease-duration=20s',
        '--metrics-bind-address=:8443',
        '--metrics-secure',
      ],
      {},
    );
    expect(flags).to.deep.include({
      leaderElect: true,
      leaseDurationMs: 20_000,
      metricsBindAddress: ':8443',
      metricsSecure: true,
    });
    expect(() => parseFlags(['--leader-elect-renew-deadline=20s'], {})).to.throw(
      FlagError,
      /lease duration > renew deadline/,
    );
  });

  it('reads durations as Go does, and 0 as off', () => {
    expect(parseDuration('250ms')).to.equal(250);
    expect(parseDuration('30s')).to.equal(30_000);
    expect(parseDuration('0')).to.equal(0);
    expect(() => parseDuration('10')).to.throw(FlagError);
  });

  it('rejects bad values naming the flag', () => {
    expect(() => parseFlags(['--concurrency=0'], {})).to.throw(FlagError, /--concurrency/);
    expect(() => parseFlags(['--log-level=loud'], {})).to.throw(FlagError, /--log-level/);
    expect(() => parseFlags(['--source-namespaces=Bad_NS'], {})).to.throw(FlagError, /not a valid namespace/);
    expect(() => parseFlags(['--nope'], {})).to.throw(FlagError, /see --help/);
  });
});
