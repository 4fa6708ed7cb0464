/**
 * Faults: regcred comes back to a correct world, on its own, from a broken control plane.
 *
 * One control plane of its own (no node), one world reused by every scenario: FAULT_NAMESPACES
 * tenant namespaces (default 300; set it to 1000 for the issue's full size) with a `default` and a
 * `builder` ServiceAccount each, the builder carrying an entry someone else wrote, and one
 * RegistryCredential selecting them all. regcred runs as separate processes from src/main.ts,
 * as its own ServiceAccount, talking to kube-apiserver through a FaultProxy; the invariant
 * checker reads the world directly and runs throughout. Each scenario starts a rotation (or a
 * fan-out), injects its fault mid-flight, ends it, and measures how long after the end the checker
 * sees a converged world (at most 60 s), with no violation at any time.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import {
  CompetingWriter,
  FaultProxy,
  kubeconfigVia,
  throttleServiceAccount,
} from '../../controlplane/faults.ts';
import { ControlPlane } from '../../controlplane/index.ts';
import { KubeClient, PING_INTERVAL_MS } from '../../src/runtime/kube.ts';
import { Checker } from '../support/checker.ts';
import { sourceData } from '../support/credential-cases.ts';
import { suiteFailed } from '../support/failures.ts';
import { startRegcred } from '../support/processes.ts';
import { Supervised } from '../support/supervisor.ts';
import { eventually } from '../support/wait.ts';
import { CONFIG_DEFAULT } from '../support/world.ts';

const run = promisify(execFile);
/** regcred's bound on parallel writes here. */
const CONCURRENCY = 16;
/** The most writes regcred can have in flight: its bounded ones, a status, an Event and the Lease. */
const IN_FLIGHT_WRITES = CONCURRENCY + 3;
const WRITE_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

interface AuditEvent {
  verb: string;
  requestURI: string;
  requestReceivedTimestamp: string;
  responseStatus?: { code: number };
  user: { username: string; extra?: Record<string, string[]> };
}

/** The `jti` claim of the ServiceAccount token in a kubeconfig (audit logs name it as credential-id). */
function tokenId(kubeconfig: string): string {
  const token = (JSON.parse(kubeconfig) as { users: { user: { token: string } }[] }).users[0]!.user.token;
  return (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
}
const NAMESPACES = Number(process.env.FAULT_NAMESPACES ?? 300);
const NAME = 'faults';
const SOURCE = { namespace: 'regcred-system', name: 'faults-pull' };
const SA = { namespace: 'regcred-system', name: 'regcred' };
const RC = `/apis/regcred.dev/v1alpha1/registrycredentials/${NAME}`;
/** The issue's bound: converged at most this long after the fault ends. */
const RECOVERY_BOUND_MS = 60_000;
/** Once a dead connection is found, the rotation that was blind goes through at once, not after a timeout (30 s). */
const SILENCE_RECOVERY_MS = 15_000;
/**
 * After cuts, within two PING intervals and the retries: a cut can leave a connection that Node
 * never sees close (kube.ts, PING_INTERVAL_MS), and only the health check finds it.
 */
const CUT_RECOVERY_MS = 2 * PING_INTERVAL_MS + 5_000;

describe('faults: regcred converges through a broken control plane', function () {
  this.timeout(20 * 60_000);
  let plane: ControlPlane;
  let proxy: FaultProxy;
  let admin: KubeClient;
  let checker: Checker;
  const operators: Supervised[] = [];
  let password = 0;
  const recoveries: [string, number][] = [];

  const kubectl = (...args: string[]) =>
    run(plane.binaries.kubectl, ['--kubeconfig', plane.admin.path, ...args]).then((r) => r.stdout);

  async function operatorKubeconfig(tag: string): Promise<string> {
    const direct = await plane.serviceAccountConfig(SA.namespace, SA.name, 4 * 3600);
    return kubeconfigVia(direct.path, proxy.url, join(plane.dir, `regcred-${tag}.kubeconfig`));
  }

  async function regcred(tag: string, args: string[] = []): Promise<Supervised> {
    const kubeconfig = await operatorKubeconfig(tag);
    const s = new Supervised(() => {
      const p = startRegcred(kubeconfig, [
        '--health-probe-bind-address=0',
        `--concurrency=${CONCURRENCY}`,
        ...args,
      ]);
      void plane.track(`regcred-${tag}`, p.child.pid!);
      return p;
    });
    operators.push(s);
    return s;
  }

  async function copiesWith(pw: string): Promise<number> {
    const list = await admin.get<{ items: { data?: Record<string, string> }[] }>('/api/v1/secrets', {
      labelSelector: `regcred.dev/credential=${NAME}`,
    });
    return list.items.filter((s) => {
      const text = s.data?.['.dockerconfigjson'];
      const doc = text ? JSON.parse(Buffer.from(text, 'base64').toString()) : {};
      return doc.auths?.['registry.example.com']?.password === pw;
    }).length;
  }

  /** regcred's requests as kube-apiserver recorded them. */
  async function auditEvents(): Promise<AuditEvent[]> {
    return (await readFile(plane.auditLogPath, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditEvent);
  }

  /** Rotates the source and resolves once regcred has updated some copies but not all. */
  async function rotateMidFlight(): Promise<string> {
    const pw = `pw-${++password}`;
    await admin.mergePatch(`/api/v1/namespaces/${SOURCE.namespace}/secrets/${SOURCE.name}`, {
      data: sourceData(pw),
    });
    const some = Math.max(1, Math.floor(NAMESPACES / 20));
    await eventually(`regcred updated ${some} copies`, async () => (await copiesWith(pw)) >= some, {
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    return pw;
  }

  /** Ends the fault now and awaits a converged world; records and prints the recovery time. */
  async function recovered(scenario: string, pw?: string): Promise<number> {
    checker.faultEnded();
    const ms = await checker.converged(RECOVERY_BOUND_MS + 30_000);
    if (pw) expect(await copiesWith(pw), 'every copy holds the rotated credential').to.equal(NAMESPACES);
    recoveries.push([scenario, ms]);
    process.stdout.write(`      recovery: ${(ms / 1000).toFixed(1)} s after the fault ended\n`);
    expect(ms, 'converged within the bound after the fault ended').to.be.at.most(RECOVERY_BOUND_MS);
    expect(checker.violations, 'no violation at any time').to.deep.equal([]);
    return ms;
  }

  before(async function () {
    this.timeout(10 * 60_000);
    plane = await ControlPlane.start({
      auditUsers: [`system:serviceaccount:${SA.namespace}:${SA.name}`],
      controllerManagerQps: 200,
    });
    admin = new KubeClient(plane.admin.kubeConfig);
    await kubectl('apply', '-k', CONFIG_DEFAULT);
    await eventually('the RegistryCredential API is served', () =>
      admin.get('/apis/regcred.dev/v1alpha1/registrycredentials').then(() => true),
    );
    proxy = await FaultProxy.start({ host: '127.0.0.1', port: plane.ports.apiserver });
    await admin.create(`/api/v1/namespaces/${SOURCE.namespace}/secrets`, {
      metadata: { name: SOURCE.name },
      type: 'kubernetes.io/dockerconfigjson',
      data: sourceData(`pw-${password}`),
    });
    const names = Array.from({ length: NAMESPACES }, (_, i) => `tenant-${i}`);
    for (let i = 0; i < names.length; i += 25)
      await Promise.all(
        names.slice(i, i + 25).map(async (ns) => {
          await admin.create('/api/v1/namespaces', { metadata: { name: ns, labels: { tenant: NAME } } });
          await admin.create(`/api/v1/namespaces/${ns}/serviceaccounts`, {
            metadata: { name: 'builder' },
            imagePullSecrets: [{ name: 'theirs' }],
          });
        }),
      );
    await eventually(
      'every tenant namespace has its default ServiceAccount',
      async () =>
        (
          await admin.get<{ items: unknown[] }>('/api/v1/serviceaccounts', {
            fieldSelector: 'metadata.name=default',
          })
        ).items.length >=
        NAMESPACES + 1,
      { timeoutMs: 300_000, intervalMs: 1000 },
    );
    checker = new Checker(admin, { boundMs: RECOVERY_BOUND_MS, intervalMs: 1000 });
    checker.start();
    await regcred('a');
    await admin.create('/apis/regcred.dev/v1alpha1/registrycredentials', {
      apiVersion: 'regcred.dev/v1alpha1',
      kind: 'RegistryCredential',
      metadata: { name: NAME },
      spec: {
        source: { secretRef: SOURCE },
        namespaces: { selector: { matchLabels: { tenant: NAME } } },
        serviceAccounts: { names: ['default', 'builder'] },
      },
    });
    const started = Date.now();
    await checker.converged(300_000);
    process.stdout.write(
      `      first fan-out to ${NAMESPACES} namespaces: ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
    );
  });

  after(async function () {
    this.timeout(120_000);
    await checker?.stop();
    await Promise.all(operators.map((o) => o.stop()));
    await proxy?.close();
    const kept = await plane?.stop({ keepLogs: suiteFailed(this) });
    if (kept) {
      // regcred's own lines, every process of every supervised operator, beside the components'.
      for (const [i, o] of operators.entries())
        await writeFile(
          join(kept, `regcred-${i}.log`),
          o.generations
            .map((g) => g.lines.map((l) => `${JSON.stringify(l)}\n`).join(''))
            .join('--- restarted\n'),
        );
      process.stderr.write(`[faults] logs kept in ${kept}\n`);
    }
    if (recoveries.length)
      process.stdout.write(
        `      recoveries: ${recoveries.map(([s, ms]) => `${s} ${(ms / 1000).toFixed(1)} s`).join('; ')}\n`,
      );
  });

  it('kube-apiserver restarted mid-rotation', async () => {
    const pw = await rotateMidFlight();
    checker.faultBegan();
    await plane.stopApiserver();
    await plane.startApiserver();
    await recovered('kube-apiserver restarted', pw);
  });

  it('etcd restarted mid-rotation', async () => {
    const pw = await rotateMidFlight();
    checker.faultBegan();
    await plane.stopEtcd();
    await plane.startEtcd();
    await recovered('etcd restarted', pw);
  });

  it('every connection cut, three times, mid-rotation', async () => {
    const pw = await rotateMidFlight();
    checker.faultBegan();
    for (let i = 0; i < 3; i++) {
      proxy.cutAll();
      await new Promise((r) => setTimeout(r, 300));
    }
    proxy.cutAll();
    const ms = await recovered('every connection cut', pw);
    expect(ms, 'no request waited out its timeout on a dead connection').to.be.at.most(CUT_RECOVERY_MS);
  });

  it('every connection held silent, mid-rotation: regcred notices by itself', async () => {
    const sup = operators[0]!;
    // The connection's health check (a PING unanswered) or a watch's inactivity limit, whichever
    // first. Only what is logged from now on counts: an earlier scenario (the cuts) may have left
    // such a line already.
    const found = () =>
      sup.generations
        .flatMap((g) => g.lines)
        .filter(
          (l) =>
            l.message === 'list/watch failed; retrying' &&
            /connection unresponsive|no data for/.test(String(l.error)),
        );
    const before = found().length;
    const noticed = () => found()[before];
    checker.faultBegan();
    // Every open connection (the HTTP/2 connection that carries every watch and request) swallows
    // every byte from now on and is never closed; new connections work. Only regcred can notice:
    // its PINGs go unanswered (kube.ts), and, later, its watches bring nothing (the watchdog).
    proxy.silence();
    proxy.heal();
    const pw = `pw-${++password}`;
    await admin.mergePatch(`/api/v1/namespaces/${SOURCE.namespace}/secrets/${SOURCE.name}`, {
      data: sourceData(pw),
    });
    const started = Date.now();
    const fired = await eventually('regcred found the silent connection dead', noticed, {
      timeoutMs: 150_000,
      intervalMs: 500,
    });
    process.stdout.write(
      `      noticed ${((Date.now() - started) / 1000).toFixed(1)} s into the silence (${fired.error})\n`,
    );
    const ms = await recovered('watches held silent', pw);
    expect(
      ms,
      'the silent connection was dropped when it was found dead; nothing waited out a timeout',
    ).to.be.at.most(SILENCE_RECOVERY_MS);
  });

  it('the API server unreachable for 60 s mid-rotation', async () => {
    const pw = await rotateMidFlight();
    checker.faultBegan();
    proxy.refuse();
    proxy.cutAll();
    await new Promise((r) => setTimeout(r, 60_000)); // the outage itself is the scenario
    proxy.heal();
    await recovered('unreachable 60 s', pw);
  });

  it('a 409 storm on the ServiceAccounts during a fan-out: every foreign entry survives', async () => {
    const targets = Array.from({ length: NAMESPACES }, (_, i) => [
      `tenant-${i}/default`,
      `tenant-${i}/builder`,
    ]).flat();
    const writer = new CompetingWriter(admin, targets, 'competitor', 40);
    writer.start();
    const stormFrom = Date.now();
    // A fan-out that rewrites every entry: the copies move to a new name.
    await admin.mergePatch(RC, { spec: { secretName: `${NAME}-v2` } });
    checker.faultBegan();
    await eventually('regcred moved some entries', async () => {
      const list = await admin.get<{ items: { imagePullSecrets?: { name: string }[] }[] }>(
        '/api/v1/serviceaccounts',
      );
      return (
        list.items.filter((sa) => sa.imagePullSecrets?.some((e) => e.name === `${NAME}-v2`)).length >= 10
      );
    });
    await new Promise((r) => setTimeout(r, 10_000)); // the storm's length
    const stats = await writer.stop();
    process.stdout.write(`      competing writer: ${JSON.stringify(stats)}\n`);
    expect(stats.writes).to.be.at.least(100);
    await recovered('409 storm');
    const conflicts = (await auditEvents()).filter(
      (e) => e.responseStatus?.code === 409 && Date.parse(e.requestReceivedTimestamp) >= stormFrom,
    ).length;
    process.stdout.write(`      regcred met ${conflicts} conflicts (409) and retried\n`);
    expect(conflicts, 'the storm made regcred meet 409s').to.be.greaterThan(0);
    const accounts = await admin.get<{
      items: { metadata: { namespace: string; name: string }; imagePullSecrets?: { name: string }[] }[];
    }>('/api/v1/serviceaccounts');
    for (const sa of accounts.items.filter((a) => a.metadata.namespace.startsWith('tenant-'))) {
      const names = (sa.imagePullSecrets ?? []).map((e) => e.name);
      expect(names, `${sa.metadata.namespace}/${sa.metadata.name}`).to.include(`${NAME}-v2`);
      expect(names).to.not.include(NAME);
      if (sa.metadata.name === 'builder') expect(names).to.include('theirs');
    }
  });

  it('429 throttling by API Priority and Fairness mid-rotation', async () => {
    const remove = await throttleServiceAccount(admin, 'regcred-throttled', SA, [
      { apiGroup: '', resources: ['secrets', 'serviceaccounts'] },
    ]);
    const rejected = async () => {
      const text = (await plane.get('/metrics')).body;
      return [
        ...text.matchAll(
          /^apiserver_flowcontrol_rejected_requests_total\{[^}]*flow_schema="regcred-throttled"[^}]*\} (\d+)/gm,
        ),
      ].reduce((n, m) => n + Number(m[1]), 0);
    };
    checker.faultBegan();
    const pw = `pw-${++password}`;
    await admin.mergePatch(`/api/v1/namespaces/${SOURCE.namespace}/secrets/${SOURCE.name}`, {
      data: sourceData(pw),
    });
    const count = await eventually(
      'kube-apiserver rejected some of regcred’s requests with 429',
      async () => {
        const n = await rejected();
        return n > 0 ? n : undefined;
      },
      { timeoutMs: 60_000 },
    );
    await new Promise((r) => setTimeout(r, 10_000)); // the throttled period
    await remove();
    process.stdout.write(`      429s: ${await rejected()} (first seen ${count})\n`);
    await recovered('429 throttling', pw);
  });

  it('the operator SIGKILLed mid-rotation and restarted', async () => {
    const sup = operators[0]!;
    const pw = await rotateMidFlight();
    checker.faultBegan();
    const killed = sup.current;
    killed.child.kill('SIGKILL');
    await killed.exited;
    await eventually('the supervisor restarted regcred', () => sup.current !== killed);
    await recovered('SIGKILLed and restarted', pw);
  });

  it('a leader SIGSTOPped past its lease, then resumed: it writes nothing more and steps down within the renew deadline', async () => {
    const election = [
      '--leader-elect',
      '--leader-elect-lease-duration=4s',
      '--leader-elect-renew-deadline=3s',
      '--leader-elect-retry-period=500ms',
      `--leader-elect-resource-namespace=${SA.namespace}`,
      '--leader-elect-resource-name=faults',
    ];
    // From here on two replicas elect a leader, each with a token of its own.
    await operators[0]!.stop();
    const a = await regcred('leader-a', election);
    await a.current.waitFor('became leader', 60_000);
    const b = await regcred('leader-b', election);
    await b.current.waitFor('running as a candidate for leadership', 60_000);
    const pw = await rotateMidFlight();
    checker.faultBegan();
    const leader = a.current;
    leader.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    const took = await b.current.waitFor('became leader', 30_000);
    process.stdout.write(
      `      follower took over ${Date.parse(took.timestamp) - stoppedAt} ms after SIGSTOP\n`,
    );
    // The follower writes for a while; the paused leader's lease is long gone.
    await eventually('the new leader made progress', async () => (await copiesWith(pw)) === NAMESPACES, {
      timeoutMs: 60_000,
    });
    const resumedAt = Date.now();
    leader.child.kill('SIGCONT');
    expect(await leader.exited, 'exits to be restarted').to.equal(1);
    const exitedAfter = Date.now() - resumedAt;
    process.stdout.write(
      `      paused ${resumedAt - stoppedAt} ms; exited ${exitedAfter} ms after SIGCONT\n`,
    );
    expect(leader.lines.map((l) => l.message)).to.include(
      'lost leadership: could not renew the lease in time',
    );
    expect(exitedAfter, 'stepped down within the renew deadline').to.be.at.most(3000);
    // What the API server received from the paused leader's token after SIGCONT. The fence keeps
    // it from sending any new write; a write it had begun when it was stopped (its bytes not yet
    // on the wire) may still arrive, and must be refused: it carries the resourceVersion it was
    // computed from, which the new leader's writes made stale (a Lease gives no fencing on the
    // API server's side; optimistic concurrency is what makes a late write harmless).
    const jti = tokenId(await readFile(join(plane.dir, 'regcred-leader-a.kubeconfig'), 'utf8'));
    const audit = (await auditEvents()).filter((e) =>
      e.user.extra?.['authentication.kubernetes.io/credential-id']?.includes(`JTI=${jti}`),
    );
    expect(audit.length, "the leader's requests are in the audit log").to.be.greaterThan(0);
    const late = audit.filter(
      (e) => WRITE_VERBS.has(e.verb) && Date.parse(e.requestReceivedTimestamp) >= resumedAt,
    );
    process.stdout.write(`      writes that arrived after SIGCONT: ${late.length}, all refused\n`);
    expect(
      late.filter((e) => e.responseStatus?.code !== 409).map((e) => `${e.verb} ${e.requestURI}`),
      'writes after SIGCONT that the API server did not refuse',
    ).to.deep.equal([]);
    expect(late.length, 'at most the writes in flight when it was stopped').to.be.at.most(IN_FLIGHT_WRITES);
    await recovered('leader paused past its lease', pw);
  });
});
