/**
 * Every command the README and the code tell a user to run, run as the user would: with the
 * control plane's kubectl, the admin kubeconfig in KUBECONFIG, from the repository root, through
 * `sh -c` (so `&&` and quoting work as in a terminal). Nothing here is a copy of a command: they are
 * extracted when the test loads, by these rules, and the extraction must find something.
 *
 * - README.md, the whole file: every line of a ```sh block (without its `# comment`); every
 *   `$ `-prompted line of another fenced block (a shown session, whose following lines are the
 *   output the README promises); every inline code span that starts with `kubectl ` (a span may
 *   wrap across lines, as in Markdown).
 * - hack/local.ts: the lines `npm run local` prints to paste into another terminal (`pasteLines`);
 *   those it prints only with the local node (a new tenant's Pod on the private image) need the
 *   node, and local.test.ts runs them there, as pasted.
 * - src/ and hack/: every string literal that contains `kubectl <command>` (error hints such as the
 *   operator's missing-CRD hint, `INSTALL_CRD_HINT`).
 *
 * Commands found twice run once. A few are not run, each named in NOT_RUN with its reason. The
 * README's placeholders (PLACEHOLDERS) stand for a RegistryCredential's name; any other `<...>` or
 * upper-case word left in a command fails it.
 *
 * Order: installing (`kubectl apply ...`) first, then using (reads before writes, so they see the
 * world `npm run local` leaves: the samples of config/samples/ and a running operator), then
 * uninstalling (`kubectl delete ...`, the finalizer escape), each run on the world it is documented
 * for. Installing and using run on the shared control plane and remove what they added. The
 * uninstall commands delete every RegistryCredential, the CRD and the regcred-system namespace,
 * which other tests need: like deploy.test.ts, they run on a control plane of their own.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { loadAll } from 'js-yaml';
import { cacheRoot } from '../../controlplane/binaries.ts';
import { ControlPlane } from '../../controlplane/index.ts';
import {
  applySamples,
  objectPath,
  pasteLines,
  SAMPLE_IMAGE,
  type SampleObject,
  sampleObjects,
} from '../../hack/local.ts';
import { INSTALL_CRD_HINT } from '../../src/operator.ts';
import { KubeClient } from '../../src/runtime/kube.ts';
import { cluster } from '../support/cluster.ts';
import { killQuietly, type RegcredProcess, startRegcred } from '../support/processes.ts';
import { eventually } from '../support/wait.ts';
import {
  CONFIG_DEFAULT,
  installRegcred,
  type RunningOperator,
  SOURCE_NAMESPACE,
  startOperator,
  waitForReady,
} from '../support/world.ts';

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const ROOT = join(import.meta.dirname, '..', '..');
const execFileAsync = promisify(execFile);

/** Printed commands this test does not run, and why. Each must still be found in the README. */
const NOT_RUN: Record<string, string> = {
  'npm ci && npm run local':
    'npm ci would reinstall node_modules under the running tests; npm run local is run by local.test.ts',
  'npm ci && npm test': 'this very test run (it would run itself)',
  'npm run bench': 'the benchmark: about 13 minutes on a fresh control plane of its own',
  'npm run bench -- --namespaces=3000': 'the benchmark at 3,000 namespaces, longer still',
  'node hack/bench/pull.ts':
    "the benchmark's F8: about 10 minutes on a control plane of its own with the node",
  'npm run image -- --push REGISTRY':
    "pushes to the user's registry; in-cluster.test.ts runs npm run image --push to the node's registry",
  'helm install regcred charts/regcred --namespace regcred-system --create-namespace':
    'in-cluster.test.ts runs the Helm section on the real node (a chart beside the suite-wide install would clash)',
  'helm upgrade regcred charts/regcred --namespace regcred-system --reuse-values --set image.tag=0.1.1':
    'in-cluster.test.ts runs it on the real node, with a tag it pushed',
  'helm uninstall regcred --namespace regcred-system --wait': 'in-cluster.test.ts runs it on the real node',
};

/** The README's placeholders; each stands for the name of an existing RegistryCredential. */
const PLACEHOLDERS = [/<name>/g, /\bNAME\b/g];
const UNKNOWN_PLACEHOLDER = /<[^<>\s]+>|\b[A-Z][A-Z0-9_]{2,}\b/;

// --- extraction -----------------------------------------------------------------------------------

interface Printed {
  command: string;
  /** Where it is printed, e.g. `README.md:186`. */
  sources: string[];
  /** What the README shows the command printing (a `$ ` line's output), if anything. */
  shownOutput?: string[];
  /** The README's, with placeholders: checked for unknown ones. */
  fromReadme: boolean;
}

interface Found {
  command: string;
  source: string;
  shownOutput?: string[];
  rule: 'sh block' | 'prompt' | 'inline' | 'local' | 'code';
}

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

function lineOf(text: string, offset: number): number {
  return text.slice(0, offset).split('\n').length;
}

/** Commands from README.md by the three rules above; also every fenced block, for the checks below. */
function readmeCommands(text: string): { found: Found[]; fences: { lang: string; lines: string[] }[] } {
  const found: Found[] = [];
  const fences: { lang: string; lines: string[] }[] = [];
  const lines = text.split('\n');
  const prose: string[] = []; // the text with fenced blocks blanked, line numbers kept
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!open) {
      prose.push(lines[i]!);
      continue;
    }
    const lang = open[1]!;
    const start = i;
    const body: string[] = [];
    prose.push('');
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) {
      body.push(lines[i]!);
      prose.push('');
    }
    prose.push('');
    fences.push({ lang, lines: body });
    body.forEach((line, j) => {
      const source = `README.md:${start + 2 + j}`;
      if (lang === 'sh') {
        const command = line.replace(/(^|\s)#.*$/, '').trim();
        if (command) found.push({ command, source, rule: 'sh block' });
      } else if (line.startsWith('$ ')) {
        const next = body.slice(j + 1).findIndex((l) => l.startsWith('$ '));
        const shownOutput = body.slice(j + 1, next < 0 ? undefined : j + 1 + next);
        found.push({ command: line.slice(2).trim(), source, shownOutput, rule: 'prompt' });
      }
    });
  }
  const rest = prose.join('\n');
  for (const span of rest.matchAll(/`([^`]+)`/g)) {
    const command = span[1]!.replace(/\s*\n\s*/g, ' ').trim();
    if (command.startsWith('kubectl ')) {
      found.push({ command, source: `README.md:${lineOf(rest, span.index)}`, rule: 'inline' });
    }
  }
  const line = (f: Found) => Number(f.source.split(':')[1]);
  return { found: found.sort((a, b) => line(a) - line(b)), fences };
}

/** The contents of the string literals (and template literal parts) of a TypeScript source. */
function stringLiterals(src: string): { text: string; offset: number }[] {
  const out: { text: string; offset: number }[] = [];
  let i = 0;
  const quoted = (quote: string) => {
    const offset = i++;
    let text = '';
    while (i < src.length && src[i] !== quote && src[i] !== '\n') {
      if (src[i] === '\\') {
        text += src[i + 1] ?? '';
        i += 2;
      } else text += src[i++];
    }
    i++;
    out.push({ text, offset });
  };
  const template = () => {
    let offset = i++;
    let text = '';
    while (i < src.length && src[i] !== '`') {
      if (src[i] === '\\') {
        text += src[i + 1] ?? '';
        i += 2;
      } else if (src[i] === '$' && src[i + 1] === '{') {
        out.push({ text, offset });
        i += 2;
        code(true);
        text = '';
        offset = i;
      } else text += src[i++];
    }
    i++;
    out.push({ text, offset });
  };
  const code = (insideTemplate: boolean) => {
    let depth = 0;
    while (i < src.length) {
      const c = src[i]!;
      if (c === '/' && src[i + 1] === '/') {
        const end = src.indexOf('\n', i);
        i = end < 0 ? src.length : end;
      } else if (c === '/' && src[i + 1] === '*') {
        const end = src.indexOf('*/', i + 2);
        i = end < 0 ? src.length : end + 2;
      } else if (c === "'" || c === '"') quoted(c);
      else if (c === '`') template();
      else {
        if (c === '{') depth++;
        if (c === '}' && depth-- === 0 && insideTemplate) {
          i++;
          return;
        }
        i++;
      }
    }
  };
  code(false);
  return out;
}

/** `kubectl ...` commands in string literals of the TypeScript files under src/ and hack/. */
function codeHints(): Found[] {
  const found: Found[] = [];
  for (const dir of ['src', 'hack']) {
    const files = readdirSync(join(ROOT, dir), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.ts'));
    for (const file of files) {
      const path = join(ROOT, dir, file);
      const src = readFileSync(path, 'utf8');
      for (const literal of stringLiterals(src)) {
        const hit = /\bkubectl\s+[a-z][^\n]*/.exec(literal.text);
        if (!hit) continue;
        found.push({
          command: hit[0].trim().replace(/[.,;:)]+$/, ''),
          source: `${relative(ROOT, path)}:${lineOf(src, literal.offset)}`,
          rule: 'code',
        });
      }
    }
  }
  return found;
}

/** pasteLines with stand-ins for what only the running control plane knows. */
const PASTE_TEMPLATE = pasteLines({
  kubeconfig: '<admin kubeconfig>',
  kubectl: '<kubectl dir>/kubectl',
  kubectlOrigin: '<kubectl dir>',
});
const isExport = (line: string) => line.startsWith('export ');

const readme = readmeCommands(README);
const fromLocal: Found[] = PASTE_TEMPLATE.filter((l) => !isExport(l)).map((command) => ({
  command,
  source: 'hack/local.ts (npm run local)',
  rule: 'local',
}));
/** What `npm run local` prints only with the local node: local.test.ts runs those lines there. */
const NODE_ONLY = pasteLines({
  kubeconfig: '<admin kubeconfig>',
  kubectl: '<kubectl dir>/kubectl',
  kubectlOrigin: '<kubectl dir>',
  image: '<image>',
}).filter((l) => !PASTE_TEMPLATE.includes(l));
const nodeOnly = (f: Found) =>
  f.source.startsWith('hack/local.ts:') && NODE_ONLY.some((l) => l.startsWith(f.command));
const fromCode = codeHints().filter((f) => !nodeOnly(f));
const everything = [...readme.found, ...fromLocal, ...fromCode];

const printed: Printed[] = [];
for (const f of everything) {
  if (f.command in NOT_RUN) continue;
  let p = printed.find((q) => q.command === f.command);
  if (!p) {
    p = { command: f.command, sources: [], fromReadme: false };
    printed.push(p);
  }
  p.sources.push(f.source);
  p.shownOutput ??= f.shownOutput;
  p.fromReadme ||= f.source.startsWith('README.md');
}

type Phase = 'install' | 'use' | 'uninstall';
function phaseOf(command: string): Phase {
  if (/^kubectl apply\b/.test(command)) return 'install';
  if (/^kubectl delete\b/.test(command) || /"finalizers":\s*null/.test(command)) return 'uninstall';
  return 'use';
}
const isRead = (command: string) =>
  /^kubectl (get|describe|explain)\b/.test(command) && !/&&|;/.test(command);
/** Uninstalling: credentials first (the operator must still run), the finalizer escape, then the rest. */
function uninstallRank(command: string): number {
  if (/^kubectl delete registrycredentials?\b/.test(command)) return 0;
  if (/finalizers/.test(command)) return 1;
  return 2;
}
const inPhase = (phase: Phase) => printed.filter((p) => phaseOf(p.command) === phase);
const INSTALL = inPhase('install');
const USE = inPhase('use').sort((a, b) => Number(!isRead(a.command)) - Number(!isRead(b.command)));
const UNINSTALL = inPhase('uninstall').sort((a, b) => uninstallRank(a.command) - uninstallRank(b.command));

const title = (p: Printed) => `${p.command}   (${p.sources.join(', ')})`;

// --- running --------------------------------------------------------------------------------------

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

async function sh(script: string, env: NodeJS.ProcessEnv): Promise<Ran> {
  try {
    const { stdout, stderr } = await execFileAsync('/bin/sh', ['-c', script], {
      cwd: ROOT,
      env,
      timeout: 150_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** The environment the pasted exports of `npm run local` give (a test below checks that they do). */
function userEnv(plane: ControlPlane): NodeJS.ProcessEnv {
  return {
    ...process.env,
    KUBECONFIG: plane.admin.path,
    PATH: `${dirname(plane.binaries.kubectl)}:${process.env.PATH}`,
  };
}

function substitute(p: Printed, credential: string): string {
  let command = p.command;
  for (const placeholder of PLACEHOLDERS) command = command.replace(placeholder, credential);
  if (p.fromReadme) {
    const unknown = UNKNOWN_PLACEHOLDER.exec(command);
    if (unknown)
      throw new Error(
        `"${p.command}" has a placeholder this test does not know: ${unknown[0]} (see PLACEHOLDERS)`,
      );
  }
  return command;
}

async function runPrinted(plane: ControlPlane, p: Printed, credential: string): Promise<Ran> {
  const command = substitute(p, credential);
  const ran = await sh(command, userEnv(plane));
  expect(ran.code, `${command} exited ${ran.code}:\n${ran.stderr}${ran.stdout}`).to.equal(0);
  return ran;
}

async function absent(client: KubeClient, path: string): Promise<boolean> {
  return client.get(path).then(
    () => false,
    () => true,
  );
}

/** The objects `kubectl apply -f X` / `-k X` applies, read without kubectl's apply. */
async function manifests(plane: ControlPlane, flag: string, target: string): Promise<SampleObject[]> {
  let text: string;
  if (flag === '-k') {
    ({ stdout: text } = await execFileAsync(plane.binaries.kubectl, ['kustomize', join(ROOT, target)]));
  } else {
    const path = join(ROOT, target);
    const files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => /\.(ya?ml|json)$/.test(f))
          .map((f) => join(path, f))
      : [path];
    text = files.map((f) => readFileSync(f, 'utf8')).join('\n---\n');
  }
  return (loadAll(text) as SampleObject[]).filter(Boolean);
}

const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

async function established(client: KubeClient, name: string): Promise<void> {
  await eventually(`the CRD ${name} is Established`, async () => {
    const crd = await client.get<{ status?: { conditions?: { type: string; status: string }[] } }>(
      `${CRD_PATH}/${name}`,
    );
    return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
  });
}

const sampleCredential = sampleObjects().find((o) => o.kind === 'RegistryCredential') as
  | (SampleObject & { spec: { secretName?: string } })
  | undefined;

// --- the tests ------------------------------------------------------------------------------------

describe('the commands the README and the code tell users to run', function () {
  this.timeout(180_000);

  it('are found: README sh blocks, sessions and inline kubectl, npm run local, and the code hints', () => {
    for (const rule of ['sh block', 'prompt', 'inline', 'local', 'code'] as const) {
      expect(
        everything.filter((f) => f.rule === rule),
        `no command found by the rule "${rule}"`,
      ).not.to.be.empty;
    }
    expect(
      fromCode.map((f) => f.command),
      'the missing-CRD hint is not found in the code',
    ).to.include(INSTALL_CRD_HINT);
    expect(INSTALL, 'no install command found').not.to.be.empty;
    expect(USE, 'no command to use regcred found').not.to.be.empty;
    expect(UNINSTALL, 'no uninstall command found').not.to.be.empty;
    for (const command of Object.keys(NOT_RUN)) {
      expect(
        everything.map((f) => f.command),
        `NOT_RUN names "${command}", which nothing prints any more`,
      ).to.include(command);
    }
    expect(sampleCredential, 'config/samples/ has no RegistryCredential').to.exist;
  });

  describe('installing, on the shared control plane', () => {
    for (const p of INSTALL) {
      it(title(p), async () => {
        const plane = cluster();
        const client = new KubeClient(plane.admin.kubeConfig);
        await runPrinted(plane, p, sampleCredential!.metadata.name);
        // What it applies is there, and a CRD is served.
        const [, flag, target] = /^kubectl apply (-f|-k) (\S+)/.exec(p.command) ?? [];
        if (!flag || !target) return;
        const objects = await manifests(plane, flag, target);
        expect(objects, `${target} holds no manifests`).not.to.be.empty;
        for (const obj of objects) {
          expect(await absent(client, objectPath(obj)), `${obj.kind} ${obj.metadata.name} applied`).to.equal(
            false,
          );
          if (obj.kind === 'CustomResourceDefinition') await established(client, obj.metadata.name);
        }
      });
    }
  });

  describe('using regcred, on the shared control plane, in the world npm run local makes', () => {
    const credential = sampleCredential!.metadata.name;
    const secretName = sampleCredential!.spec.secretName ?? credential;
    let client: KubeClient;
    let operator: RunningOperator | undefined;
    let samples: SampleObject[] = [];
    const namespacesCreated: string[] = [];

    before(async () => {
      await installRegcred();
      client = new KubeClient(cluster().admin.kubeConfig);
      samples = await applySamples(client);
      operator = await startOperator({ name: 'docs-commands' });
      await waitForReady(credential);
    });

    after(async () => {
      // Delete the credential while the operator runs, so that it cleans up; then everything else
      // the samples and the commands created (not namespaces other tests share, like regcred-system).
      await client.delete(`/apis/regcred.dev/v1alpha1/registrycredentials/${credential}`).catch(() => {});
      await eventually(`${credential} is gone`, () =>
        absent(client, `/apis/regcred.dev/v1alpha1/registrycredentials/${credential}`),
      );
      await operator?.stop();
      const leftovers = [
        ...samples.filter((o) => o.kind !== 'RegistryCredential').reverse(),
        ...namespacesCreated.map((name) => ({ kind: 'Namespace', apiVersion: 'v1', metadata: { name } })),
      ];
      for (const obj of leftovers) await client.delete(objectPath(obj)).catch(() => {});
      for (const obj of leftovers) {
        await eventually(`${obj.kind} ${obj.metadata.name} is gone`, () => absent(client, objectPath(obj)), {
          timeoutMs: 60_000,
        });
      }
    });

    const exportsTitle = PASTE_TEMPLATE.filter(isExport).join(' ; ');
    it(`${exportsTitle}   (hack/local.ts, npm run local)`, async () => {
      const plane = cluster();
      const lines = pasteLines({
        kubeconfig: plane.admin.path,
        kubectl: plane.binaries.kubectl,
        kubectlOrigin: plane.binaries.origin,
      });
      expect(lines.filter((l) => !isExport(l))).to.deep.equal(PASTE_TEMPLATE.filter((l) => !isExport(l)));
      // Pasted into a terminal that has neither set, and maybe another kubectl on its PATH.
      const env = { ...process.env };
      delete env.KUBECONFIG;
      const ran = await sh(
        [
          ...lines.filter(isExport),
          'command -v kubectl',
          'echo "$KUBECONFIG"',
          'kubectl get --raw /readyz',
        ].join('\n'),
        env,
      );
      expect(ran.code, ran.stderr).to.equal(0);
      expect(ran.stdout.trim().split('\n')).to.deep.equal([plane.binaries.kubectl, plane.admin.path, 'ok']);
    });

    it("the README's copy of what npm run local prints is what hack/local.ts prints", () => {
      const plane = cluster();
      // As printed with the local node, whose registry's port only the running cluster knows.
      const real = pasteLines({
        kubeconfig: plane.admin.path,
        kubectl: plane.binaries.kubectl,
        kubectlOrigin: plane.binaries.origin,
        image: `127.0.0.1:<port>/${SAMPLE_IMAGE.repository}:${SAMPLE_IMAGE.tag}`,
      }).map((l) => l.replace(/\s+#.*$/, ''));
      const shown = readme.fences.find((f) => f.lines.some((l) => l.startsWith('export KUBECONFIG=')));
      expect(shown, 'the README shows no block with export KUBECONFIG=').to.exist;
      const builtHere = plane.binaries.origin === dirname(plane.binaries.kubectl);
      for (const line of shown!.lines.filter((l) => l.trim())) {
        if (!isExport(line)) {
          expect(real, `the README shows "${line}"`).to.include(line);
          continue;
        }
        const variable = line.slice('export '.length).split('=')[0]!;
        const printedLine = real.find((l) => l.startsWith(`export ${variable}=`));
        expect(printedLine, `npm run local prints no export ${variable}`).to.exist;
        if (variable === 'PATH' && !builtHere) continue; // binaries from KUBEBUILDER_ASSETS
        // The README shows the default cache; a machine with XDG_CACHE_HOME set prints its own.
        const pattern = escapeRegExp(line)
          .replace(/<id>/g, '[^/\\s]+')
          .replace(escapeRegExp('=~/.cache/regcred/k8s/'), () => `=${escapeRegExp(cacheRoot())}/`)
          .replace(/=~\//, `=${homedir()}/`);
        expect(printedLine).to.match(new RegExp(`^${pattern}$`));
      }
    });

    for (const p of USE) {
      it(title(p), async () => {
        const plane = cluster();
        const ran = await runPrinted(plane, p, credential);
        const command = substitute(p, credential);
        if (p.shownOutput?.length) {
          // The README shows this output: the header and the row of each object it shows match,
          // except AGE (other tests' objects may be listed too).
          const cells = (l: string) => l.trim().split(/\s+/);
          const [header, ...rows] = ran.stdout.trim().split('\n').map(cells);
          const [shownHeader, ...shownRows] = p.shownOutput.map(cells);
          expect(header).to.deep.equal(shownHeader);
          const age = shownHeader!.indexOf('AGE');
          const withoutAge = (row: string[]) => row.filter((_, i) => i !== age);
          for (const shownRow of shownRows) {
            const row = rows.find((r) => r[0] === shownRow[0]);
            expect(row, `a row for ${shownRow[0]}`).to.exist;
            expect(withoutAge(row!)).to.deep.equal(withoutAge(shownRow));
          }
        }
        const described = /^kubectl describe (?:regcred|registrycredentials?) (\S+)$/.exec(command);
        if (described) {
          expect(ran.stdout).to.match(new RegExp(`^Name:\\s+${described[1]}$`, 'm'));
          expect(ran.stdout).to.contain('Conditions:');
        }
        if (/^kubectl explain /.test(command)) expect(ran.stdout).to.contain('FIELDS:');
        const listed = /^kubectl get \S*secret\S* -n (\S+)$/.exec(command);
        if (listed) expect(ran.stdout).to.contain(`secret/${secretName}`);
        for (const [, ns] of command.matchAll(/kubectl create namespace (\S+)/g)) {
          namespacesCreated.push(ns!);
          // A namespace the sample selects gets the credential: the copy and the default SA's entry.
          await eventually(`${ns}/default lists ${secretName}`, async () => {
            const sa = await client.get<{ imagePullSecrets?: { name: string }[] }>(
              `/api/v1/namespaces/${ns}/serviceaccounts/default`,
            );
            return sa.imagePullSecrets?.some((e) => e.name === secretName);
          });
          expect(await absent(client, `/api/v1/namespaces/${ns}/secrets/${secretName}`)).to.equal(false);
        }
      });
    }
  });

  describe('uninstalling, on a control plane of its own (it removes the CRD and regcred-system)', () => {
    const TENANT = 'docs-tenant';
    let plane: ControlPlane;
    let client: KubeClient;
    let operator: RegcredProcess | undefined;

    before(async () => {
      plane = await ControlPlane.start();
      client = new KubeClient(plane.admin.kubeConfig);
      await execFileAsync(plane.binaries.kubectl, [
        '--kubeconfig',
        plane.admin.path,
        'apply',
        '-k',
        CONFIG_DEFAULT,
      ]);
      await eventually('the API serves RegistryCredentials', () =>
        client.get('/apis/regcred.dev/v1alpha1/registrycredentials'),
      );
      await client.create('/api/v1/namespaces', { metadata: { name: TENANT } });
      await eventually(`${TENANT}/default exists`, () =>
        client.get(`/api/v1/namespaces/${TENANT}/serviceaccounts/default`),
      );
    });
    after(async () => {
      await killQuietly(operator);
      await plane?.stop();
    });

    const running = () => operator !== undefined && operator.child.exitCode === null;
    async function operatorRunning(): Promise<void> {
      if (running()) return;
      const identity = await plane.serviceAccountConfig('regcred-system', 'regcred');
      operator = startRegcred(identity.path, ['--health-probe-bind-address=0']);
      await operator.waitFor('running');
    }
    async function operatorStopped(): Promise<void> {
      if (!running()) return;
      operator!.child.kill('SIGTERM');
      expect(await operator!.exited).to.equal(0);
    }
    const entries = async () =>
      (
        (
          await client.get<{ imagePullSecrets?: { name: string }[] }>(
            `/api/v1/namespaces/${TENANT}/serviceaccounts/default`,
          )
        ).imagePullSecrets ?? []
      ).map((e) => e.name);
    /** A RegistryCredential that the running operator has propagated to TENANT. */
    async function propagated(name: string): Promise<void> {
      await operatorRunning();
      await client.create(`/api/v1/namespaces/${SOURCE_NAMESPACE}/secrets`, {
        metadata: { name },
        type: 'kubernetes.io/dockerconfigjson',
        stringData: { '.dockerconfigjson': '{"auths":{"r.example.com":{"auth":"dTpw"}}}' },
      });
      await client.create('/apis/regcred.dev/v1alpha1/registrycredentials', {
        apiVersion: 'regcred.dev/v1alpha1',
        kind: 'RegistryCredential',
        metadata: { name },
        spec: {
          source: { secretRef: { namespace: SOURCE_NAMESPACE, name } },
          namespaces: { names: [TENANT] },
        },
      });
      await eventually(`${TENANT}/default lists ${name}`, async () => (await entries()).includes(name));
    }

    for (const p of UNINSTALL) {
      it(title(p), async () => {
        const rcPath = '/apis/regcred.dev/v1alpha1/registrycredentials';
        if (/^kubectl delete registrycredentials? .*--all\b/.test(p.command)) {
          // Step 1 of the README: while the operator runs.
          await propagated('docs-all');
          await runPrinted(plane, p, 'docs-all');
          // "Each deletion waits for the operator to remove every copy and every entry it added."
          expect((await client.get<{ items: unknown[] }>(rcPath)).items).to.deep.equal([]);
          expect(await absent(client, `/api/v1/namespaces/${TENANT}/secrets/docs-all`)).to.equal(true);
          expect(await entries()).not.to.include('docs-all');
        } else if (/finalizers/.test(p.command)) {
          // "If the operator is already gone and a RegistryCredential hangs in deletion".
          const stuck = 'docs-stuck';
          await propagated(stuck);
          await operatorStopped();
          await client.delete(`${rcPath}/${stuck}`);
          const hanging = await client.get<{ metadata: { deletionTimestamp?: string } }>(
            `${rcPath}/${stuck}`,
          );
          expect(hanging.metadata.deletionTimestamp).to.be.a('string');
          await runPrinted(plane, p, stuck);
          await eventually(`${stuck} is gone`, () => absent(client, `${rcPath}/${stuck}`));
          // "The garbage collector then deletes the copies (... up to a minute)."
          await eventually(
            'the garbage collector removed the copy',
            () => absent(client, `/api/v1/namespaces/${TENANT}/secrets/${stuck}`),
            { timeoutMs: 120_000, intervalMs: 500 },
          );
        } else {
          // Step 2 of the README: the operator goes, with everything that was installed.
          await operatorStopped();
          await runPrinted(plane, p, 'unused');
          const [, flag, target] = /^kubectl delete (-f|-k) (\S+)/.exec(p.command) ?? [];
          if (!flag || !target) return;
          for (const obj of await manifests(plane, flag, target)) {
            await eventually(
              `${obj.kind} ${obj.metadata.name} is gone`,
              () => absent(client, objectPath(obj)),
              {
                timeoutMs: 90_000,
              },
            );
          }
        }
      });
    }

    it(`the operator's missing-CRD hint, "${INSTALL_CRD_HINT}", run where it is printed, lets the operator start`, async () => {
      await operatorStopped();
      await eventually('the CRD is gone', () =>
        absent(client, `${CRD_PATH}/registrycredentials.regcred.dev`),
      );
      const bare = startRegcred(plane.admin.path, ['--health-probe-bind-address=0']);
      expect(await bare.exited).to.equal(3);
      const message = bare.lines.map((l) => l.message).find((m) => m.includes('install it first: '));
      expect(message, 'the operator printed no hint').to.exist;
      const hint = message!.slice(message!.indexOf('install it first: ') + 'install it first: '.length);
      expect(hint).to.equal(INSTALL_CRD_HINT);
      const ran = await sh(hint, userEnv(plane));
      expect(ran.code, `${hint} exited ${ran.code}:\n${ran.stderr}`).to.equal(0);
      await established(client, 'registrycredentials.regcred.dev');
      operator = startRegcred(plane.admin.path, ['--health-probe-bind-address=0']);
      await operator.waitFor('running');
    });
  });
});
