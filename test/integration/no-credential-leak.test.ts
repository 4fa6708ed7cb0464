/**
 * No credential leaks: status, Events and logs never hold a credential, nor any part of one, nor
 * its base64 or a hash of it, however hostile the source. Distinct secret strings (`leak-<n>-<hex>`,
 * each planted in exactly one place) go into every part of a set of hostile sources: registry keys
 * with userinfo, path, query and fragment, every known field, unknown fields and their names,
 * top-level members other than `auths`, broken documents, legacy `.dockercfg`, and a valid
 * credential rotated to an invalid one and to another valid one. Then every version of every
 * RegistryCredential the run made (watched, so statuses that were overwritten count too), every
 * Event in the cluster (core/v1 and events.k8s.io/v1) and every line of the operator's debug log
 * are searched for each of them. Copies legitimately hold the credential: Secret data is not
 * searched. The messages must stay useful all the same: they still name the registry.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import type { RegistryCredential } from '../../src/api/v1alpha1.ts';
import { ApiError } from '../../src/runtime/kube.ts';
import { eventually } from '../support/wait.ts';
import {
  admin,
  b64,
  condition,
  createCredential,
  createNamespace,
  createSource,
  deleteCredential,
  eventsAbout,
  getCredential,
  getSecret,
  ignoreNotFound,
  installRegcred,
  operatorIdle,
  RC_PATH,
  type RunningOperator,
  type SecretJson,
  SOURCE_NAMESPACE,
  startOperator,
  unique,
  updateSource,
  waitForGone,
} from '../support/world.ts';

const DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';
const DOCKER_CFG = 'kubernetes.io/dockercfg';

// --- what is planted --------------------------------------------------------------------------------

interface Planted {
  secret: string;
  where: string;
  kind: 'token' | 'user:password' | 'document';
}

const planted: Planted[] = [];
let tokens = 0;

/** What one hostile source's builder gets: `t(part)` plants a fresh token in `part` of it. */
interface Planter {
  (part: string): string;
  /** Registers `user:password` (its base64 is what an `auth` would hold) and returns it. */
  pair(user: string, password: string, part: string): string;
}

function planter(title: string): Planter {
  const t = (part: string) => {
    const token = `leak-${tokens++}-${randomBytes(12).toString('hex')}`;
    planted.push({ secret: token, where: `${title}: ${part}`, kind: 'token' });
    return token;
  };
  t.pair = (user: string, password: string, part: string) => {
    const pair = `${user}:${password}`;
    planted.push({ secret: pair, where: `${title}: ${part}`, kind: 'user:password' });
    return pair;
  };
  return t;
}

function plantDocument(text: string | Buffer, where: string): void {
  planted.push({ secret: Buffer.from(text).toString('latin1'), where, kind: 'document' });
}

interface Hostile {
  title: string;
  type: string;
  /** Data values as bytes; base64-encoded into the Secret. */
  data: Record<string, string | Buffer>;
  /**
   * true: regcred must refuse it (kubelet would, and only a refusal puts a registry key or a
   * field into a message, which is what this source is here to try). Unset: either verdict.
   */
  refused?: boolean;
  /** A registry host that the SourceValid and Ready messages, and the Warning Event, must name. */
  names?: string;
  /**
   * Not a JSON object: the API server checks that much of a pull Secret itself and may refuse to
   * store it (422), and then regcred never sees it.
   */
  notAnObject?: boolean;
  /** Tenant namespaces the RegistryCredential selects (fresh ones); default 1. */
  namespaces?: number;
}

function hostile(
  title: string,
  build: (t: Planter) => Omit<Hostile, 'title' | 'type' | 'data'> & {
    document: string | Buffer;
    type?: string;
    data?: Record<string, string | Buffer>;
  },
): Hostile {
  const { document, type = DOCKER_CONFIG_JSON, data, ...rest } = build(planter(title));
  const key = type === DOCKER_CFG ? '.dockercfg' : '.dockerconfigjson';
  plantDocument(document, `${title}: the whole document`);
  return { title, type, data: data ?? { [key]: document }, ...rest };
}

const SOURCES: Hostile[] = [
  hostile('userinfo in the registry key, auth not base64 (the known bug)', (t) => {
    const password = t('the password in the userinfo of the registry key');
    t.pair('bot', password, "the registry key's userinfo");
    return {
      document: `{"auths":{"https://bot:${password}@registry.example.com":{"auth":"not base64!"}}}`,
      refused: true,
      names: 'registry.example.com',
      namespaces: 2,
    };
  }),
  hostile('userinfo in a registry key without scheme, with a port', (t) => {
    const password = t('the password in the userinfo of the registry key');
    t.pair('bot', password, "the registry key's userinfo");
    return {
      document: `{"auths":{"bot:${password}@registry.example.com:5000":{"username":"bot","auth":"%%%"}}}`,
      refused: true,
      names: 'registry.example.com',
    };
  }),
  hostile("a '/' in the userinfo's password", (t) => {
    const password = `pa/${t("the password in the registry key's userinfo, after a '/'")}`;
    t.pair('bot', password, "the registry key's userinfo");
    return {
      // Go's url.Parse ends the authority at the '/': the host it sees is not host.example.
      document: `{"auths":{"https://bot:${password}@host.example":{"password":42}}}`,
      refused: true,
    };
  }),
  ...['/', '?', '#'].map((c) =>
    hostile(`a '${c}' in the userinfo's password, after digits (Go reads user:digits as host:port)`, (t) => {
      const user = t("the username in the registry key's userinfo");
      const password = `${10000 + Math.floor(Math.random() * 90000)}${c}${t(`the userinfo's password, after digits and '${c}'`)}`;
      t.pair(user, password, "the registry key's userinfo");
      return {
        document: `{"auths":{"https://${user}:${password}@registry.example.com":{"auth":"not base64!"}}}`,
        refused: true,
      };
    }),
  ),
  hostile("an '@' inside the userinfo's password", (t) => {
    const password = `${t("the userinfo's password, before its '@'")}@${t("the userinfo's password, after its '@'")}`;
    t.pair('bot', password, "the registry key's userinfo");
    return {
      document: `{"auths":{"https://bot:${password}@registry.example.com/v2/":{"email":true}}}`,
      refused: true,
      names: 'registry.example.com',
    };
  }),
  hostile('a token as the userinfo (no password), as with GitHub', (t) => {
    const user = t("the registry key's userinfo (user only)");
    return {
      document: `{"auths":{"https://${user}@ghcr.example.com":{"auth":"${b64('no-colon')}"}}}`,
      refused: true,
      names: 'ghcr.example.com',
    };
  }),
  hostile("secrets in the registry key's path, query and fragment", (t) => {
    const key = `registry.example.com/${t("the registry key's path")}/v2/?token=${t("the registry key's query")}#${t("the registry key's fragment")}`;
    return {
      document: `{"auths":{"${key}":{"auth":"${b64('no-colon')}"}}}`,
      refused: true,
      names: 'registry.example.com',
    };
  }),
  hostile('a registry key longer than 200 characters, made of a token repeated', (t) => {
    const key = t('the registry key, repeated 8 times').repeat(8);
    expect(key.length).to.be.greaterThan(200);
    return { document: `{"auths":{"${key}":{"auth":12}}}`, refused: true };
  }),
  hostile('username, password and email, with auth a number', (t) => {
    const [user, password] = [t('username'), t('password')];
    t.pair(user, password, 'username:password');
    return {
      document: `{"auths":{"fields.example":{"username":"${user}","password":"${password}","email":"${t('email')}","auth":7}}}`,
      refused: true,
      names: 'fields.example',
    };
  }),
  hostile("username, password and email, with auth the base64 of a token (no ':')", (t) => {
    const [user, password] = [t('username'), t('password')];
    t.pair(user, password, 'username:password');
    const auth = b64(t("what auth decodes to (no ':')"));
    return {
      document: `{"auths":{"nocolon.example":{"username":"${user}","password":"${password}","email":"${t('email')}","auth":"${auth}"}}}`,
      refused: true,
      names: 'nocolon.example',
    };
  }),
  hostile('identitytoken and registrytoken, with username a number', (t) => ({
    document: `{"auths":{"tokens.example":{"identitytoken":"${t('identitytoken')}","registrytoken":"${t('registrytoken')}","username":17}}}`,
    refused: true,
    names: 'tokens.example',
  })),
  hostile('auth not base64, holding a token as text', (t) => ({
    document: `{"auths":{"text.example":{"auth":"${t('auth, as text before " is not base64!"')} is not base64!"}}}`,
    refused: true,
    names: 'text.example',
  })),
  hostile('auth holding user:password in clear (not base64)', (t) => {
    const pair = t.pair('bot', t('the password in auth, in clear'), 'auth, in clear');
    return {
      document: `{"auths":{"clear.example":{"auth":"${pair}"}}}`,
      refused: true,
      names: 'clear.example',
    };
  }),
  hostile('unknown field names and values holding tokens, auth invalid', (t) => ({
    document: `{"auths":{"unknown.example":{"${t('an unknown field name')}":"${t('an unknown field value')}","${t('an unknown field name (object value)')}":{"${t('a field name inside an unknown field')}":"${t('a value inside an unknown field')}"},"auth":"${b64('no-colon')}"}}}`,
    refused: true,
    names: 'unknown.example',
  })),
  hostile('top-level members other than auths holding tokens (HttpHeaders, unknown)', (t) => {
    const [user, password] = [t('username'), t('password')];
    t.pair(user, password, 'username:password');
    return {
      document: `{"auths":{"headers.example":{"username":"${user}","password":"${password}"}},"HttpHeaders":{"X-Token":"${t('an HttpHeaders value')}"},"${t('an unknown top-level member name')}":"${t('an unknown top-level member value')}"}`,
    };
  }),
  hostile('an HttpHeaders value that is a number (kubelet refuses it)', (t) => {
    const password = t('the password in auth');
    const pair = t.pair('u', password, 'auth');
    return {
      document: `{"auths":{"headers2.example":{"auth":"${b64(pair)}"}},"HttpHeaders":{"X-${t('an HttpHeaders name')}":1,"X-Token":"${t('an HttpHeaders value')}"}}`,
    };
  }),
  hostile('Docker config members (credsStore, credHelpers) holding tokens, auth invalid', (t) => ({
    document: `{"auths":{"helpers.example":{"auth":"!"}},"credsStore":"${t('credsStore')}","credHelpers":{"${t('a credHelpers key')}":"${t('a credHelpers value')}"}}`,
    refused: true,
    names: 'helpers.example',
  })),
  hostile('a document truncated right after a password', (t) => ({
    document: `{"auths":{"r.example":{"password":"${t('the password, where the document ends')}`,
    refused: true,
    notAnObject: true,
  })),
  hostile("a document truncated inside a registry key's userinfo", (t) => ({
    document: `{"auths":{"https://bot:${t("the userinfo's password, where the document ends")}@r.example`,
    refused: true,
    notAnObject: true,
  })),
  hostile('garbage after the JSON document', (t) => ({
    document: `{"auths":{"r.example":{"password":"${t('the password')}"}}} ${t('text after the document')}`,
    refused: true,
    notAnObject: true,
  })),
  hostile('invalid UTF-8 right after a password', (t) => ({
    document: Buffer.concat([
      Buffer.from(`{"auths":{"r.example":{"password":"${t('the password, before bytes 0xff 0xfe')}`),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}}}'),
    ]),
  })),
  hostile("invalid UTF-8 inside a registry key's userinfo, auth a number", (t) => ({
    document: Buffer.concat([
      Buffer.from(`{"auths":{"https://bot:${t("the userinfo's password, before bytes 0xff 0xfe")}`),
      Buffer.from([0xff, 0xfe]),
      Buffer.from(
        `${t("the userinfo's password, after bytes 0xff 0xfe")}@registry.example.com":{"auth":1}}}`,
      ),
    ]),
    refused: true,
    names: 'registry.example.com',
  })),
  hostile('a document that is a JSON string', (t) => ({
    document: `"${t('the whole document, a JSON string')}"`,
    refused: true,
    notAnObject: true,
  })),
  hostile('auths a string', (t) => ({ document: `{"auths":"${t('auths')}"}`, refused: true })),
  hostile('a registry entry that is a string', (t) => ({
    document: `{"auths":{"entry.example":"${t('the registry entry')}"}}`,
    refused: true,
    names: 'entry.example',
  })),
  hostile('a field spelt twice in different case', (t) => ({
    // kubelet takes the last one; email a number makes the entry invalid.
    document: `{"auths":{"case.example":{"password":"${t('password')}","Password":"${t('Password')}","email":5}}}`,
    refused: true,
    names: 'case.example',
  })),
  hostile('auths spelt twice in different case', (t) => ({
    // kubelet merges the two; auth a number makes the second entry invalid.
    document: `{"auths":{"a.example":{"password":"${t('password under auths')}"}},"Auths":{"b.example":{"password":"${t('password under Auths')}","auth":5}}}`,
    refused: true,
  })),
  hostile('a legacy kubernetes.io/dockercfg holding a dockerconfigjson document', (t) => {
    const pair = t.pair('u', t('the password in auth'), 'auth');
    return {
      type: DOCKER_CFG,
      document: `{"auths": {"reg.example": {"auth": "${b64(pair)}"}}}`,
    };
  }),
  hostile('a legacy kubernetes.io/dockercfg with userinfo in a registry key, auth not base64', (t) => {
    const password = t('the password in the userinfo of the registry key');
    t.pair('bot', password, "the registry key's userinfo");
    return {
      type: DOCKER_CFG,
      document: `{"https://bot:${password}@legacy.example.com":{"auth":"%"}}`,
      refused: true,
      names: 'legacy.example.com',
    };
  }),
  hostile('a .dockerconfigjson with no registries, other data keys holding tokens', (t) => {
    const document = `{"auths":{}}`;
    const other = `{"auths":{"r.example":{"password":"${t('the password in a .dockercfg data key')}"}}}`;
    plantDocument(other, 'a .dockerconfigjson with no registries: its .dockercfg data key');
    return {
      document,
      data: { '.dockerconfigjson': document, '.dockercfg': other, [t('a data key name')]: t('a data value') },
      refused: true,
    };
  }),
];

/** The valid credential, rotated to an invalid one and to another valid one. */
const ROTATED = 'a valid credential rotated to an invalid one and to another valid one';
const ROTATIONS = ['valid', 'invalid', 'valid again'].map((stage) => {
  const t = planter(`${ROTATED} (${stage})`);
  if (stage === 'invalid') {
    const password = t('the password in the userinfo of the registry key');
    t.pair('rot', password, "the registry key's userinfo");
    const document = `{"auths":{"https://rot:${password}@registry.example.com":{"username":"${t('username')}","password":"${t('password')}","auth":"${t('auth, as text')} !"}}}`;
    plantDocument(document, `${ROTATED} (${stage}): the whole document`);
    return { stage, document, password };
  }
  const [user, password, userinfo] = [t('username'), t('password'), t("the userinfo's password")];
  const document = `{"auths":{"registry.example.com/${t('the path of a registry key')}":{"username":"${user}","password":"${password}","email":"${t('email')}","auth":"${b64(t.pair(user, password, 'auth'))}","${t('an unknown field name')}":"${t('an unknown field value')}"},"https://bot:${userinfo}@valid.example.com":{"auth":"${b64(t.pair('bot', userinfo, "the registry key's userinfo and its auth"))}"}},"HttpHeaders":{"X-Token":"${t('an HttpHeaders value')}"}}`;
  plantDocument(document, `${ROTATED} (${stage}): the whole document`);
  return { stage, document, password };
});

// --- what is searched, and how ------------------------------------------------------------------------

/** Text found in the run's output: `where` says which object or line, and where inside it. */
interface Text {
  where: string;
  text: string;
}

/** Every string in a JSON value (field names too), with its path. */
function textsOf(where: string, value: unknown): Text[] {
  const out: Text[] = [];
  const walk = (v: unknown, path: string) => {
    if (typeof v === 'string') out.push({ where: `${where} ${path || '(the whole line)'}`, text: v });
    else if (Array.isArray(v)) {
      for (const [i, x] of v.entries()) walk(x, `${path}[${i}]`);
    } else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        const at = /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`;
        out.push({ where: `${where} ${at} (its name)`, text: k });
        walk(x, at);
      }
    } else if (v !== null && v !== undefined) out.push({ where: `${where} ${path}`, text: String(v) });
  };
  walk(value, '');
  return out;
}

/**
 * The base64 (standard and URL alphabets) of `bytes` wherever it sits in a longer base64 text: at
 * each of the 3 offsets modulo 3, the characters that depend on these bytes alone.
 */
function base64Forms(bytes: Buffer): string[] {
  const forms = new Set<string>();
  for (const shift of [0, 1, 2]) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    const form = encoded.slice(Math.ceil((shift * 8) / 6), Math.floor(((shift + bytes.length) * 8) / 6));
    forms.add(form);
    forms.add(form.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return [...forms];
}

interface Needle {
  plant: Planted;
  form: string;
  /** Lower is worse; a finding keeps the worst form. */
  rank: number;
  text: string;
}

const NEEDLE_KEY = 12;

function needlesOf(plant: Planted): Needle[] {
  const bytes = Buffer.from(plant.secret, plant.kind === 'document' ? 'latin1' : 'utf8');
  const needles: Needle[] = [{ plant, form: 'verbatim', rank: 0, text: plant.secret }];
  for (const text of base64Forms(bytes)) {
    needles.push({ plant, form: 'in base64', rank: 1, text });
    // base64 of base64 (an auth inside a document that is base64 in turn).
    for (const twice of base64Forms(Buffer.from(text))) {
      needles.push({ plant, form: 'in base64 of base64', rank: 1, text: twice });
    }
  }
  for (const alg of ['sha256', 'sha1', 'md5']) {
    const digest = createHash(alg).update(bytes).digest();
    for (const text of [digest.toString('hex'), digest.toString('base64').replace(/=+$/, '')]) {
      needles.push({ plant, form: `as its ${alg} hash`, rank: 2, text });
    }
  }
  if (plant.kind === 'token') {
    // Any part of it: every window of its random part (a fragment of a token cut short, say).
    const random = plant.secret.slice(plant.secret.lastIndexOf('-') + 1);
    for (let i = 0; i + NEEDLE_KEY <= random.length; i++) {
      needles.push({ plant, form: 'in part', rank: 3, text: random.slice(i, i + NEEDLE_KEY) });
    }
  }
  return needles.filter((n) => n.text.length >= NEEDLE_KEY);
}

interface Finding {
  plant: Planted;
  form: string;
  rank: number;
  where: string;
  excerpt: string;
}

/**
 * Finds every planted secret in `texts`, in any of its forms, plus any `leak-<n>-` prefix (a token
 * cut short before its random part). One pass over the text with an index of the needles' first
 * characters, so thousands of needles cost no more than a few.
 */
function search(texts: Text[]): Finding[] {
  const index = new Map<string, Needle[]>();
  for (const plant of planted) {
    for (const n of needlesOf(plant)) {
      const key = n.text.slice(0, NEEDLE_KEY);
      index.set(key, [...(index.get(key) ?? []), n]);
    }
  }
  const byToken = new Map(planted.filter((p) => p.kind === 'token').map((p) => [p.secret.split('-')[1], p]));
  const found = new Map<string, Finding>();
  const note = (plant: Planted, form: string, rank: number, t: Text, at: number, length: number) => {
    const key = `${plant.secret}\u0000${t.where}`;
    const before = found.get(key);
    if (before && before.rank <= rank) return;
    const excerpt = JSON.stringify(t.text.slice(Math.max(0, at - 40), at + length + 40));
    found.set(key, { plant, form, rank, where: t.where, excerpt });
  };
  for (const t of texts) {
    for (let i = 0; i + NEEDLE_KEY <= t.text.length; i++) {
      for (const n of index.get(t.text.slice(i, i + NEEDLE_KEY)) ?? []) {
        if (t.text.startsWith(n.text, i)) note(n.plant, n.form, n.rank, t, i, n.text.length);
      }
    }
    for (const m of t.text.matchAll(/leak-(\d+)-/g)) {
      const plant = byToken.get(m[1]!);
      if (plant) note(plant, 'in part (its leak-<n>- prefix)', 4, t, m.index, m[0].length);
    }
  }
  return [...found.values()];
}

function report(findings: Finding[]): string {
  const bySecret = new Map<Planted, Finding[]>();
  for (const f of findings) bySecret.set(f.plant, [...(bySecret.get(f.plant) ?? []), f]);
  const lines: string[] = [];
  for (const [plant, fs] of bySecret) {
    lines.push(`${plant.kind} ${JSON.stringify(plant.secret.slice(0, 80))}, planted in ${plant.where}:`);
    // A few of each kind of place (statuses, Events, log lines), then a count.
    const shown = [...Map.groupBy(fs, (f) => f.where.split(' ')[0]).values()].flatMap((g) => g.slice(0, 3));
    for (const f of shown) lines.push(`    found ${f.form} in ${f.where}: ${f.excerpt}`);
    if (fs.length > shown.length) lines.push(`    ... and in ${fs.length - shown.length} more places`);
  }
  return lines.join('\n');
}

// --- the scenario ---------------------------------------------------------------------------------

interface Run {
  hostile: Hostile;
  name: string;
  namespaces: string[];
  /** The status that judged the source, as first seen. */
  verdict?: RegistryCredential;
  /** Why the API server refused to store the source, if it did (then there is no credential). */
  rejected?: string;
}

interface KubeEvent {
  metadata: { namespace: string; name: string };
  involvedObject?: { name: string };
  regarding?: { name: string };
  type: string;
  reason: string;
  message?: string;
  note?: string;
}

async function listAll<T>(path: string): Promise<T[]> {
  const items: T[] = [];
  let next: string | undefined;
  do {
    const page = await admin().get<{ items: T[]; metadata: { continue?: string } }>(path, {
      limit: 500,
      continue: next,
    });
    items.push(...page.items);
    next = page.metadata.continue || undefined;
  } while (next);
  return items;
}

/** Waits until the credential's status judges its source (a verdict other than "not found yet"). */
async function verdictOn(name: string): Promise<RegistryCredential> {
  return eventually(`${name} has a status judging its source`, async () => {
    const rc = await getCredential(name);
    const valid = condition(rc, 'SourceValid');
    const judged =
      rc.status?.observedGeneration === rc.metadata.generation &&
      valid !== undefined &&
      valid.reason !== 'SourceNotFound' &&
      (valid.status === 'False' || condition(rc, 'Ready')?.status === 'True');
    if (!judged) throw new Error(`status is ${JSON.stringify(rc.status)}`);
    return rc;
  });
}

async function eventRecorded(name: string, type: 'Normal' | 'Warning', reason: string): Promise<void> {
  await eventually(`a ${type} Event ${reason} about ${name}`, async () =>
    (await eventsAbout('default', name)).some((e) => e.type === type && e.reason === reason),
  );
}

/** The Events a verdict announces: Warnings for both conditions when refused, Synced when valid. */
async function verdictAnnounced(rc: RegistryCredential): Promise<void> {
  const valid = condition(rc, 'SourceValid')!;
  const ready = condition(rc, 'Ready')!;
  if (valid.status === 'False') {
    await eventRecorded(rc.metadata.name, 'Warning', valid.reason);
    await eventRecorded(rc.metadata.name, 'Warning', ready.reason);
  } else await eventRecorded(rc.metadata.name, 'Normal', ready.reason);
}

function credentialText(copy: SecretJson | undefined): string {
  return Buffer.from(copy?.data?.['.dockerconfigjson'] ?? '', 'base64').toString();
}

describe('no credential leak', function () {
  this.timeout(300_000);
  const base = unique('nl');
  const runs: Run[] = SOURCES.map((h, i) => ({
    hostile: h,
    name: `${base}-${i}`,
    namespaces: Array.from({ length: h.namespaces ?? 1 }, (_, j) => `${base}-${i}-${'abc'[j]}`),
  }));
  const rotated = { name: `${base}-rot`, namespaces: [`${base}-rot-a`, `${base}-rot-b`] };
  const credentials = [...runs.map((r) => r.name), rotated.name];
  const namespaces = [...runs.flatMap((r) => r.namespaces), ...rotated.namespaces];

  let op: RunningOperator | undefined;
  let cleaned = false;
  const stopWatching = new AbortController();
  let watching: Promise<void> | undefined;
  let watchFailed: unknown;
  /** The run's output, collected once, searched by the tests below. */
  const output: Text[] = [];
  /** Every version of the source Secrets, as the API returned them. */
  const sources: SecretJson[] = [];
  let events: KubeEvent[] = [];
  let logLines = 0;
  let versionsSeen = 0;

  async function cleanUp(): Promise<void> {
    if (cleaned) return;
    cleaned = true;
    await Promise.all(credentials.map((n) => deleteCredential(n)));
    await Promise.all(credentials.map((n) => waitForGone(`${RC_PATH}/${n}`, 60_000)));
    await Promise.all([
      ...namespaces.map((ns) => admin().delete(`/api/v1/namespaces/${ns}`).catch(ignoreNotFound)),
      ...credentials.map((n) =>
        admin().delete(`/api/v1/namespaces/${SOURCE_NAMESPACE}/secrets/${n}`).catch(ignoreNotFound),
      ),
    ]);
  }

  before(async () => {
    await installRegcred();
    op = await startOperator({ name: base });

    // Every version of every RegistryCredential of this run, from before the first one exists:
    // a status that a later one overwrote was still seen by whoever looked.
    const mine = new Set(credentials);
    const from = (await admin().get<{ metadata: { resourceVersion: string } }>(RC_PATH)).metadata
      .resourceVersion;
    watching = admin()
      .watch(
        RC_PATH,
        { resourceVersion: from, allowWatchBookmarks: true },
        (type, object) => {
          if (type === 'ERROR')
            throw new Error(`the watch of RegistryCredentials failed: ${JSON.stringify(object)}`);
          const rc = object as RegistryCredential;
          if (type === 'BOOKMARK' || !mine.has(rc.metadata.name)) return;
          versionsSeen++;
          output.push(
            ...textsOf(
              `RegistryCredential ${rc.metadata.name} (watch ${type} @${rc.metadata.resourceVersion})`,
              rc,
            ),
          );
        },
        { signal: stopWatching.signal, inactivityTimeoutMs: 120_000 },
      )
      .then(
        () => {
          if (!stopWatching.signal.aborted)
            watchFailed = new Error('the watch of RegistryCredentials ended early');
        },
        (err: unknown) => {
          watchFailed = err;
        },
      );

    await Promise.all(namespaces.map((ns) => createNamespace(ns)));
    for (const r of runs) {
      const data = Object.fromEntries(
        Object.entries(r.hostile.data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
      );
      try {
        sources.push(await createSource(r.name, { type: r.hostile.type, data }));
      } catch (err) {
        if (!(r.hostile.notAnObject && err instanceof ApiError && err.code === 422)) throw err;
        r.rejected = err.message;
      }
    }
    // One at a time, each announced before the next: Events are rate-limited (and never retried).
    for (const r of runs) {
      if (r.rejected) continue;
      await createCredential(r.name, {
        source: { secretRef: { namespace: SOURCE_NAMESPACE, name: r.name } },
        namespaces: { names: r.namespaces },
      });
      r.verdict = await verdictOn(r.name);
      await verdictAnnounced(r.verdict);
      if (condition(r.verdict, 'SourceValid')?.status === 'True') {
        plantDocument(
          credentialText(await getSecret(r.namespaces[0]!, r.name)),
          `${r.hostile.title}: its copies`,
        );
      }
    }

    // The valid one, rotated to an invalid one and to another valid one.
    const [valid, invalid, validAgain] = ROTATIONS as [
      (typeof ROTATIONS)[0],
      (typeof ROTATIONS)[0],
      (typeof ROTATIONS)[0],
    ];
    const data = (document: string) => ({ '.dockerconfigjson': b64(document) });
    sources.push(await createSource(rotated.name, { data: data(valid.document) }));
    await createCredential(rotated.name, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: rotated.name } },
      namespaces: { names: rotated.namespaces },
    });
    await verdictAnnounced(await verdictOn(rotated.name));
    for (const ns of rotated.namespaces) {
      const text = credentialText(await getSecret(ns, rotated.name));
      expect(text, `${ns} holds the valid credential`).to.include(valid.password);
      plantDocument(text, `${ROTATED} (valid): its copies`);
    }

    sources.push(await updateSource(rotated.name, data(invalid.document)));
    const refused = await eventually(`${rotated.name} refuses the invalid rotation`, async () => {
      const rc = await getCredential(rotated.name);
      if (condition(rc, 'SourceValid')?.status !== 'False') throw new Error(JSON.stringify(rc.status));
      return rc;
    });
    await verdictAnnounced(refused);

    const last = await updateSource(rotated.name, data(validAgain.document));
    sources.push(last);
    await eventually(`${rotated.name} propagates the valid credential again`, async () => {
      const rc = await getCredential(rotated.name);
      return (
        rc.status?.sourceResourceVersion === last.metadata.resourceVersion &&
        condition(rc, 'Ready')?.status === 'True'
      );
    });
    await eventRecorded(rotated.name, 'Normal', 'Rotated');
    for (const ns of rotated.namespaces) {
      const text = credentialText(await getSecret(ns, rotated.name));
      expect(text, `${ns} holds the credential rotated back to valid`).to.include(validAgain.password);
      plantDocument(text, `${ROTATED} (valid again): its copies`);
    }
    await operatorIdle(op);

    // Collect: the final objects, then delete everything (deletion is output too), then the
    // Events and the log once the operator has stopped and flushed it.
    const made = credentials.filter((n) => !runs.some((r) => r.name === n && r.rejected));
    for (const name of made) {
      output.push(...textsOf(`RegistryCredential ${name} (final)`, await getCredential(name)));
    }
    await cleanUp();
    stopWatching.abort();
    await watching;
    if (watchFailed) throw watchFailed;
    await op.stop();
    const log = readFileSync(op.logPath, 'utf8').split('\n');
    op = undefined;
    log.forEach((line, i) => {
      if (!line.trim()) return;
      logLines++;
      let parsed: unknown = line;
      try {
        parsed = JSON.parse(line);
      } catch {}
      output.push(...textsOf(`operator log line ${i + 1}`, parsed));
    });
    for (const api of ['/api/v1/events', '/apis/events.k8s.io/v1/events']) {
      const items = await listAll<KubeEvent>(api);
      if (api === '/api/v1/events') events = items;
      for (const e of items) {
        output.push(...textsOf(`Event ${e.metadata.namespace}/${e.metadata.name} (${api})`, e));
      }
    }
  });

  after(async () => {
    stopWatching.abort();
    await watching;
    if (op) {
      await cleanUp();
      await op.stop();
    }
  });

  it('the search finds every planted token in the source Secrets, where they are only base64', () => {
    const texts = sources.flatMap((s) =>
      textsOf(`Secret ${s.metadata.name}@${s.metadata.resourceVersion}`, s),
    );
    const found = new Set(search(texts).map((f) => f.plant));
    const unstored = runs.filter((r) => r.rejected).map((r) => `${r.hostile.title}: `);
    const missed = planted.filter(
      (p) => p.kind === 'token' && !found.has(p) && !unstored.some((u) => p.where.startsWith(u)),
    );
    expect(missed.map((p) => `${p.secret} (${p.where})`)).to.deep.equal([]);
  });

  it('searched something: every version of every RegistryCredential, their Events, the debug log', () => {
    expect(versionsSeen).to.be.at.least(credentials.length * 2);
    const about = new Set(credentials);
    const ours = events.filter((e) => about.has(e.involvedObject?.name ?? ''));
    const refused = runs.filter((r) => r.hostile.refused && !r.rejected).length;
    expect(ours.filter((e) => e.type === 'Warning').length).to.be.at.least(2 * refused);
    expect(logLines).to.be.greaterThan(0);
  });

  it('puts no planted secret (nor its base64, a hash, or a part of it) in any status, Event or log line', () => {
    const findings = search(output);
    if (findings.length > 0) {
      const secrets = new Set(findings.map((f) => f.plant)).size;
      expect.fail(
        `${secrets} planted secret(s) found in ${findings.length} place(s) of the run's output:\n${report(findings)}`,
      );
    }
  });

  it('refuses every source kubelet would refuse', () => {
    const accepted = runs.filter(
      (r) => r.hostile.refused && !r.rejected && condition(r.verdict!, 'SourceValid')?.status !== 'False',
    );
    expect(accepted.map((r) => r.hostile.title)).to.deep.equal([]);
  });

  it('still names the registry host in the SourceValid and Ready messages and the Warning Event', () => {
    const problems: string[] = [];
    for (const r of runs) {
      const host = r.hostile.names;
      if (!host || !r.verdict) continue;
      const valid = condition(r.verdict, 'SourceValid');
      const ready = condition(r.verdict, 'Ready');
      for (const [what, message] of [
        ['SourceValid', valid?.message],
        ['Ready', ready?.message],
        [
          `the ${valid?.reason} Event`,
          events.find((e) => e.involvedObject?.name === r.name && e.reason === valid?.reason)?.message,
        ],
      ] as const) {
        if (!message?.includes(host)) problems.push(`${r.hostile.title}: ${what} does not name ${host}`);
      }
    }
    expect(problems).to.deep.equal([]);
  });
});
