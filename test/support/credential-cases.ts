/**
 * The table of source pull Secrets that regcred's reading is checked on: by the unit tests against
 * the expected result written here, and by the kubelet comparison test against kubelet's own code
 * (test/integration/kubelet-reading.test.ts). Every case is a Secret as the API returns it.
 */
import { Buffer } from 'node:buffer';
import { DOCKER_CFG, DOCKER_CONFIG_JSON, type SourceSecretData } from '../../src/regcred/credential.ts';

export const b64 = (content: string | Uint8Array): string => Buffer.from(content).toString('base64');
export const unpadded = (base64: string): string => base64.replace(/=+$/, '');

/** A `.dockerconfigjson` document with one registry entry, as `docker login` writes it. */
export function dockerConfig(registry: string, user: string, password: string): string {
  const auth = b64(`${user}:${password}`);
  return JSON.stringify({ auths: { [registry]: { username: user, password, auth } } });
}

/** A source Secret's `data` for the user `bot` at registry.example.com with this password. */
export function sourceData(password: string): Record<string, string> {
  return { '.dockerconfigjson': b64(dockerConfig('registry.example.com', 'bot', password)) };
}

export function dockerconfigjson(content: string | object | Uint8Array): SourceSecretData {
  const text =
    typeof content === 'string' || content instanceof Uint8Array ? content : JSON.stringify(content);
  return { type: DOCKER_CONFIG_JSON, data: { '.dockerconfigjson': b64(text) } };
}

export function dockercfg(content: string | object | Uint8Array): SourceSecretData {
  const text =
    typeof content === 'string' || content instanceof Uint8Array ? content : JSON.stringify(content);
  return { type: DOCKER_CFG, data: { '.dockercfg': b64(text) } };
}

/** Bytes from text and byte values, for documents that are not valid UTF-8. */
export function bytes(...parts: (string | number[])[]): Uint8Array {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
}

/** The canonical entry regcred writes for these credentials (the form documented in credential.ts). */
export function entry(user: string, password: string, email?: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!user.includes(':') && (user || password)) out.auth = b64(`${user}:${password}`);
  if (email) out.email = email;
  if (password) out.password = password;
  if (user) out.username = user;
  return out;
}

/** The canonical document for these registries (keys sorted by code unit, as regcred sorts them). */
export function canonical(auths: Record<string, Record<string, string>>): string {
  const keys = Object.keys(auths).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{"auths":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(auths[k])}`).join(',')}}}`;
}

export type Expectation =
  | { canonical: string }
  | { refused: 'SourceMalformed' | 'SourceWrongType'; message: RegExp };

export interface CredentialCase {
  name: string;
  secret: SourceSecretData;
  expect: Expectation;
}

const ALICE = b64('alice:S3CRET-xyz');
const malformed = (message: RegExp): Expectation => ({ refused: 'SourceMalformed', message });
const ok = (auths: Record<string, Record<string, string>>): Expectation => ({ canonical: canonical(auths) });
const one = (entryJson: string, registry = 'r.io') =>
  dockerconfigjson(`{"auths":{${JSON.stringify(registry)}:${entryJson}}}`);

/** 10,000 levels in all: the document's own three (object, auths, entry) plus these. */
const nested = (levels: number) => `${'['.repeat(levels)}${']'.repeat(levels)}`;

export const CASES: CredentialCase[] = [
  // --- the canonical form ---
  {
    name: 'sorts keys at every level and drops all whitespace',
    secret: dockerconfigjson(`{
      "auths": {
        "registry.example.com": { "username": "alice", "password": "S3CRET-xyz", "auth": "${ALICE}" },
        "ghcr.io": { "auth": "${b64('bob:pw')}" }
      }
    }`),
    expect: ok({ 'ghcr.io': entry('bob', 'pw'), 'registry.example.com': entry('alice', 'S3CRET-xyz') }),
  },
  {
    name: 'keeps registry keys exactly as given, even ones kubelet cannot parse',
    secret: dockerconfigjson(
      '{"auths":{"not a registry ::":{},"https://index.docker.io/v1/":{},"9":{},"__proto__":{},' +
        '"localhost:5000":{},"*.azurecr.io":{},"10":{},"":{}}}',
    ),
    expect: ok(
      Object.fromEntries(
        [
          'not a registry ::',
          'https://index.docker.io/v1/',
          '9',
          '__proto__',
          'localhost:5000',
          '*.azurecr.io',
          '10',
          '',
        ].map((k) => [k, {}]),
      ),
    ),
  },
  {
    name: 'drops what kubelet does not read: top-level members other than auths, unknown fields',
    secret: dockerconfigjson({
      auths: {
        'r.io': {
          auth: ALICE,
          identitytoken: 'tok',
          registrytoken: 5,
          serveraddress: 'r.io',
          nested: { a: [1, { b: null }] },
          nothing: null,
        },
      },
      credsStore: 'desktop',
      credHelpers: { 'gcr.io': 'gcloud' },
      HttpHeaders: { 'User-Agent': 'x', 'X-Empty': null },
    }),
    expect: ok({ 'r.io': entry('alice', 'S3CRET-xyz') }),
  },
  {
    name: 'adds auth for a username and password given as fields',
    secret: one('{"username":"u","password":"p","email":"u@example.com"}'),
    expect: ok({ 'r.io': entry('u', 'p', 'u@example.com') }),
  },
  {
    name: 'writes no auth when the username has a colon (auth could not carry it)',
    secret: one('{"username":"u:x","password":"p"}'),
    expect: ok({ 'r.io': { password: 'p', username: 'u:x' } }),
  },
  {
    name: 'lets auth override the username and password fields, as kubelet does',
    secret: one(`{"username":"x","password":"y","auth":"${b64('alice:pw')}"}`),
    expect: ok({ 'r.io': entry('alice', 'pw') }),
  },
  {
    name: 'uses username and password when auth is empty',
    secret: one('{"auth":"","username":"u","password":"p"}'),
    expect: ok({ 'r.io': entry('u', 'p') }),
  },
  { name: 'keeps an entry without credentials', secret: one('{}'), expect: ok({ 'r.io': {} }) },
  {
    name: 'reads an entry that is null as one without credentials (Go calls UnmarshalJSON with null)',
    secret: one('null'),
    expect: ok({ 'r.io': {} }),
  },
  {
    name: 'converts a legacy dockercfg map to the auths form',
    secret: dockercfg(`{ "r.io": { "email": "a@example.com", "auth": "${unpadded(b64('alice:pw'))}" } }`),
    expect: ok({ 'r.io': entry('alice', 'pw', 'a@example.com') }),
  },

  // --- Go's decoding, where JSON.parse differs ---
  {
    name: 'merges auths given twice, as Go decodes both into the same map',
    secret: dockerconfigjson(`{"auths":{"a.io":{"auth":"${ALICE}"}},"auths":{"b.io":{"auth":"${ALICE}"}}}`),
    expect: ok({ 'a.io': entry('alice', 'S3CRET-xyz'), 'b.io': entry('alice', 'S3CRET-xyz') }),
  },
  {
    name: 'merges auths spelt in another case, as field names match case-insensitively',
    secret: dockerconfigjson('{"Auths":{"a.io":{}},"AUTHS":{"b.io":{}},"auths":{"c.io":{}}}'),
    expect: ok({ 'a.io': {}, 'b.io': {}, 'c.io': {} }),
  },
  {
    name: 'empties auths at a null auths, then reads the next one',
    secret: dockerconfigjson('{"auths":{"a.io":{}},"auths":null,"auths":{"b.io":{}}}'),
    expect: ok({ 'b.io': {} }),
  },
  {
    name: 'takes the last entry of a registry key given twice, whole',
    secret: dockerconfigjson('{"auths":{"r.io":{"username":"a","password":"1"},"r.io":{"password":"2"}}}'),
    expect: ok({ 'r.io': entry('', '2') }),
  },
  {
    name: 'merges a registry key across two auths, the later entry winning',
    secret: dockerconfigjson('{"auths":{"r.io":{"password":"1"}},"auths":{"r.io":{"password":"2"}}}'),
    expect: ok({ 'r.io': entry('', '2') }),
  },
  {
    name: 'takes the last of two spellings of a field',
    secret: one(`{"auth":"${b64('a:1')}","Auth":"${b64('b:2')}"}`),
    expect: ok({ 'r.io': entry('b', '2') }),
  },
  {
    name: 'keeps a field value when the same field follows as null',
    secret: one('{"username":"u","password":"p","PASSWORD":null}'),
    expect: ok({ 'r.io': entry('u', 'p') }),
  },
  {
    name: 'folds the long s and the Kelvin sign into field names, as Go does',
    secret: dockerconfigjson('{"auth\u017f":{"r.io":{"u\u017fername":"alice","pa\u017f\u017fword":"pw"}}}'),
    expect: ok({ 'r.io': entry('alice', 'pw') }),
  },
  {
    name: 'does not fold other look-alike letters (dotless i is not i)',
    secret: dockerconfigjson('{"auths":{"r.io":{"username":"u","password":"p","emaıl":"x"}}}'),
    expect: ok({ 'r.io': entry('u', 'p') }),
  },
  {
    name: 'reads invalid UTF-8 in strings as U+FFFD, one per byte, as Go does',
    secret: dockerconfigjson(
      bytes('{"auths":{"r', [0xff], '.io":{"username":"a', [0xe2, 0x82], '","password":"', [0xc3], '"}}}'),
    ),
    expect: ok({ 'r\ufffd.io': entry('a\ufffd\ufffd', '\ufffd') }),
  },
  {
    name: 'reads an encoded surrogate (ED A0 80) as three U+FFFD',
    secret: dockerconfigjson(bytes('{"auths":{"r.io":{"password":"', [0xed, 0xa0, 0x80], '"}}}')),
    expect: ok({ 'r.io': entry('', '\ufffd\ufffd\ufffd') }),
  },
  {
    name: 'reads an overlong encoding as U+FFFD per byte',
    secret: dockerconfigjson(bytes('{"auths":{"r.io":{"password":"', [0xc0, 0xaf], '"}}}')),
    expect: ok({ 'r.io': entry('', '\ufffd\ufffd') }),
  },
  {
    name: 'reads a lone escaped surrogate as U+FFFD and a pair as one character',
    secret: one('{"username":"\\ud800x","password":"\\ud83d\\ude00\\udc00"}'),
    expect: ok({ 'r.io': entry('\ufffdx', '\u{1f600}\ufffd') }),
  },
  {
    name: 'ignores numbers, booleans, arrays and objects in fields kubelet does not read',
    secret: one('{"port":5000,"insecure":true,"list":[1,[2,{"a":"b"}]],"deep":{"a":{"b":{"c":1}}}}'),
    expect: ok({ 'r.io': {} }),
  },
  {
    name: 'accepts 10,000 levels of nesting, the most Go allows',
    secret: one(`{"x":${nested(10_000 - 3)}}`),
    expect: ok({ 'r.io': {} }),
  },
  {
    name: "refuses 10,001 levels of nesting, beyond Go's maxNestingDepth",
    secret: one(`{"x":${nested(10_000 - 2)}}`),
    expect: malformed(/not valid JSON \(exceeded max depth at byte \d+\)/),
  },
  {
    name: 'accepts HttpHeaders that are strings or null, in any case',
    secret: dockerconfigjson('{"auths":{"r.io":{}},"httpheaders":{"a":"b","c":null},"HttpHeaders":null}'),
    expect: ok({ 'r.io': {} }),
  },
  {
    name: 'refuses HttpHeaders with a value that is not a string, as kubelet does',
    secret: dockerconfigjson('{"auths":{"r.io":{}},"HttpHeaders":{"X-Port":5000}}'),
    expect: malformed(/HttpHeaders in \.dockerconfigjson is not a map of strings/),
  },
  {
    name: 'refuses HttpHeaders that is not an object',
    secret: dockerconfigjson('{"auths":{"r.io":{}},"HTTPHEADERS":["x"]}'),
    expect: malformed(/HttpHeaders .* not a map of strings/),
  },
  {
    name: 'ignores a non-string value in a field kubelet does not read (identitytoken)',
    secret: one(`{"auth":"${ALICE}","identitytoken":5,"registrytoken":{}}`),
    expect: ok({ 'r.io': entry('alice', 'S3CRET-xyz') }),
  },

  // --- the auth field ---
  {
    name: 'accepts an unpadded auth and writes it padded',
    secret: one(`{"auth":"${unpadded(b64('alice:pwd1'))}"}`),
    expect: ok({ 'r.io': entry('alice', 'pwd1') }),
  },
  {
    name: 'accepts an auth wrapped over lines, as Go skips line breaks',
    secret: one('{"auth":"YWxp\\r\\nY2U6\\ncHc=\\n"}'),
    expect: ok({ 'r.io': entry('alice', 'pw') }),
  },
  {
    name: 'splits auth at its first colon',
    secret: one(`{"auth":"${b64('alice:p:w')}"}`),
    expect: ok({ 'r.io': entry('alice', 'p:w') }),
  },
  {
    name: 'accepts an auth with an empty user and password',
    secret: one(`{"auth":"${b64(':')}"}`),
    expect: ok({ 'r.io': {} }),
  },
  {
    name: 'keeps the exact bytes of an auth that is not UTF-8, as auth only',
    secret: one(`{"auth":"${b64(new Uint8Array([0xff, 0x3a, 0xfe]))}","username":"x"}`),
    expect: ok({ 'r.io': { auth: b64(new Uint8Array([0xff, 0x3a, 0xfe])) } }),
  },
  ...[
    'YWxpY2U6cHc-', // URL-safe alphabet
    'YWxpY2U6_Hc=',
    'YWxp Y2U6cHc=',
    'YWxpY2U6cHc==', // too much padding
    'YWxpY2U6cHc=YWxp', // padding inside
    'YWxpY', // a length no encoding produces
    '=',
    'YQ=', // padded but not a whole quantum
    'YWxpY2U6cHc= ', // a space after the padding
    '\\n', // only a line break: not empty, decodes to nothing
  ].map(
    (auth): CredentialCase => ({
      name: `refuses auth ${JSON.stringify(auth)}, which Go's base64 refuses`,
      secret: one(`{"auth":"${auth}"}`),
      expect: malformed(/field auth (is not valid base64|does not decode to user:password)/),
    }),
  ),
  {
    name: 'refuses an auth without a colon, as kubelet does',
    secret: one(`{"auth":"${b64('alicepw')}"}`),
    expect: malformed(/registry r\.io: field auth does not decode to user:password \(no ':'\)/),
  },

  // --- what kubelet refuses ---
  ...['username', 'password', 'email', 'auth', 'AUTH', 'Password'].flatMap((field) =>
    ['5', 'true', '{}', '["x"]'].map(
      (value): CredentialCase => ({
        name: `refuses ${field} = ${value}, as Go cannot decode it into a string`,
        secret: one(`{${JSON.stringify(field)}:${value}}`),
        expect: malformed(new RegExp(`registry r\\.io: field ${field.toLowerCase()} is not a string`)),
      }),
    ),
  ),
  ...['"x"', '5', 'true', '[]', '[{}]'].map(
    (value): CredentialCase => ({
      name: `refuses an entry ${value}`,
      secret: one(value),
      expect: malformed(/registry r\.io: the entry is not a JSON object/),
    }),
  ),
  ...['[]', '"r.io"', '5', 'true'].map(
    (value): CredentialCase => ({
      name: `refuses auths = ${value}`,
      secret: dockerconfigjson(`{"auths":${value}}`),
      expect: malformed(/auths in \.dockerconfigjson is not a JSON object/),
    }),
  ),
  ...['[]', '"auths"', '5', 'true'].flatMap((text): CredentialCase[] => [
    {
      name: `refuses a dockerconfigjson document ${text}`,
      secret: dockerconfigjson(text),
      expect: malformed(/\.dockerconfigjson is not a JSON object/),
    },
    {
      name: `refuses a dockercfg document ${text}`,
      secret: dockercfg(text),
      expect: malformed(/\.dockercfg is not a JSON object/),
    },
  ]),
  ...[
    '{"auths":',
    '{"auths":{"r.io":{}}',
    "{'auths':{}}",
    '{"auths":{}} trailing',
    '{"auths":{"r.io":{"password":"a\u0001"}}}',
    '{"auths":{"r.io":{"password":"\\x41"}}}',
    '{"auths":{"r.io":{"password":"\\u12G4"}}}',
    '{"auths":{"r.io":{"port":01}}}',
    '{"auths":{"r.io":{"port":1.}}}',
    '{"auths":{"r.io":{},}}',
    '\ufeff{"auths":{"r.io":{}}}',
  ].map(
    (text): CredentialCase => ({
      name: `refuses ${JSON.stringify(text)}, which Go's scanner refuses`,
      secret: dockerconfigjson(text),
      expect: malformed(/\.dockerconfigjson is not valid JSON \(.* at byte \d+\)/),
    }),
  ),
  {
    name: 'refuses a byte outside a string that is not UTF-8',
    secret: dockerconfigjson(bytes('{"auths":{"r.io":{}}', [0xff], '}')),
    expect: malformed(/not valid JSON/),
  },

  // --- what regcred refuses beyond kubelet, or before it ---
  {
    name: 'refuses a document without auths (kubelet would read no registry)',
    secret: dockerconfigjson({ 'r.io': { auth: ALICE } }),
    expect: malformed(/\.dockerconfigjson has no auths member/),
  },
  {
    name: 'refuses empty auths (kubelet would read no registry)',
    secret: dockerconfigjson({ auths: {} }),
    expect: malformed(/holds no registry/),
  },
  {
    name: 'refuses auths that end up empty after a null',
    secret: dockerconfigjson('{"auths":{"r.io":{}},"auths":null}'),
    expect: malformed(/holds no registry/),
  },
  {
    name: 'refuses a document that is null (kubelet would read no registry)',
    secret: dockerconfigjson('null'),
    expect: malformed(/\.dockerconfigjson holds no registry/),
  },
  {
    name: 'refuses an empty dockercfg map',
    secret: dockercfg({}),
    expect: malformed(/\.dockercfg holds no registry/),
  },
  {
    name: 'refuses a dockercfg Secret holding a dockerconfigjson document, saying what to do',
    secret: dockercfg({ auths: { 'r.io': { auth: ALICE } } }),
    expect: {
      refused: 'SourceWrongType',
      message:
        /holds a kubernetes\.io\/dockerconfigjson document .*recreate the Secret with type kubernetes\.io\/dockerconfigjson/,
    },
  },
  {
    name: 'refuses a Secret of another type, naming it and the two accepted types',
    secret: { type: 'Opaque', data: dockerconfigjson({ auths: { 'r.io': {} } }).data },
    expect: {
      refused: 'SourceWrongType',
      message:
        /type "Opaque" is not accepted; expected kubernetes\.io\/dockerconfigjson or kubernetes\.io\/dockercfg/,
    },
  },
  {
    name: 'refuses a Secret without a type',
    secret: { data: dockerconfigjson({ auths: { 'r.io': {} } }).data },
    expect: { refused: 'SourceWrongType', message: /no type/ },
  },
  {
    name: 'refuses a Secret without the data key of its type',
    secret: { type: DOCKER_CONFIG_JSON, data: { '.dockercfg': b64('{"r.io":{}}') } },
    expect: malformed(/data key \.dockerconfigjson is missing/),
  },
  {
    name: 'refuses an empty data value',
    secret: dockerconfigjson(''),
    expect: malformed(/\.dockerconfigjson is empty/),
  },
  {
    name: 'accepts a source of exactly 1 MiB',
    secret: dockerconfigjson(`{"auths":{"r.io":{}}}${' '.repeat(1024 * 1024 - 21)}`),
    expect: ok({ 'r.io': {} }),
  },
];
