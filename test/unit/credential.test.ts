/**
 * The source pull Secret parser: what kubelet would refuse is refused, and what passes comes out in
 * one canonical form, byte for byte, without ever quoting a credential in a message.
 */
import { Buffer } from 'node:buffer';
import { expect } from 'chai';
import fc from 'fast-check';
import {
  DOCKER_CFG,
  DOCKER_CONFIG_JSON,
  type ParseResult,
  parseSourceSecret,
  type SourceSecretData,
} from '../../src/regcred/credential.ts';

const b64 = (content: string | Uint8Array): string => Buffer.from(content).toString('base64');
const unpadded = (base64: string): string => base64.replace(/=+$/, '');

function dockerconfigjson(content: string | object | Uint8Array): SourceSecretData {
  const text =
    typeof content === 'string' || content instanceof Uint8Array ? content : JSON.stringify(content);
  return { type: DOCKER_CONFIG_JSON, data: { '.dockerconfigjson': b64(text) } };
}

function dockercfg(content: string | object): SourceSecretData {
  const text = typeof content === 'string' ? content : JSON.stringify(content);
  return { type: DOCKER_CFG, data: { '.dockercfg': b64(text) } };
}

/** Parses a `.dockerconfigjson` whose `auths` holds one registry with this entry. */
function parseEntry(entry: unknown, registry = 'registry.example.com'): ParseResult {
  return parseSourceSecret(dockerconfigjson({ auths: { [registry]: entry } }));
}

function canonicalOf(result: ParseResult): string {
  if (!result.ok) return expect.fail(`expected success, got ${result.reason}: ${result.message}`);
  return result.canonical;
}

function failureOf(result: ParseResult, reason: string = 'SourceMalformed'): string {
  if (result.ok) return expect.fail(`expected ${reason}, got ${result.canonical}`);
  expect(result.reason).to.equal(reason);
  expect(result.message).to.be.a('string').and.not.equal('');
  return result.message;
}

describe('source credential parsing', () => {
  const ALICE = b64('alice:S3CRET-xyz');

  describe('canonical form', () => {
    it('sorts keys at every level and drops all whitespace', () => {
      const source = `{
        "auths": {
          "registry.example.com": { "username": "alice", "password": "S3CRET-xyz", "auth": "${ALICE}" },
          "ghcr.io": { "auth": "${b64('bob:pw')}" }
        }
      }`;
      expect(canonicalOf(parseSourceSecret(dockerconfigjson(source)))).to.equal(
        `{"auths":{"ghcr.io":{"auth":"${b64('bob:pw')}"},` +
          `"registry.example.com":{"auth":"${ALICE}","password":"S3CRET-xyz","username":"alice"}}}`,
      );
    });

    it('returns the padded base64 of the canonical text as the data value for copies', () => {
      const result = parseEntry({ auth: ALICE });
      if (!result.ok) return expect.fail(result.message);
      expect(result.dataBase64).to.equal(Buffer.from(result.canonical, 'utf8').toString('base64'));
      expect(Buffer.from(result.dataBase64, 'base64').toString('utf8')).to.equal(result.canonical);
    });

    it('returns the registry keys sorted', () => {
      const result = parseSourceSecret(
        dockerconfigjson({ auths: { 'quay.io': {}, 'docker.io': {}, 'ghcr.io': {} } }),
      );
      if (!result.ok) return expect.fail(result.message);
      expect(result.registries).to.deep.equal(['docker.io', 'ghcr.io', 'quay.io']);
    });

    it('gives identical bytes for the same credentials whatever the key order, whitespace or auth padding', () => {
      const auth = b64('alice:pw'); // 'YWxpY2U6cHc=', one padding character
      const a = `{"auths":{"r.io":{"auth":"${auth}","username":"alice"},"q.io":{"password":"x"}}}`;
      const b = `{ "auths" : {\n\t"q.io" : { "password" : "x" } ,\r\n "r.io":{"username":"alice",  "auth":"${unpadded(auth)}"} } }`;
      expect(canonicalOf(parseSourceSecret(dockerconfigjson(b)))).to.equal(
        canonicalOf(parseSourceSecret(dockerconfigjson(a))),
      );
    });

    it('keeps registry keys exactly as given, even ones kubelet cannot parse, sorted by code unit', () => {
      const source =
        '{"auths":{"not a registry ::":{},"https://index.docker.io/v1/":{},"9":{},"__proto__":{},' +
        '"localhost:5000":{},"*.azurecr.io":{},"10":{}}}';
      const result = parseSourceSecret(dockerconfigjson(source));
      expect(canonicalOf(result)).to.equal(
        '{"auths":{"*.azurecr.io":{},"10":{},"9":{},"__proto__":{},"https://index.docker.io/v1/":{},' +
          '"localhost:5000":{},"not a registry ::":{}}}',
      );
      expect(result.ok && result.registries).to.deep.equal([
        '*.azurecr.io',
        '10',
        '9',
        '__proto__',
        'https://index.docker.io/v1/',
        'localhost:5000',
        'not a registry ::',
      ]);
    });

    it('drops top-level members other than auths', () => {
      const source = {
        auths: { 'r.io': { auth: ALICE } },
        credsStore: 'desktop',
        credHelpers: { 'gcr.io': 'gcloud' },
        HttpHeaders: { 'User-Agent': 'x' },
      };
      expect(canonicalOf(parseSourceSecret(dockerconfigjson(source)))).to.equal(
        `{"auths":{"r.io":{"auth":"${ALICE}"}}}`,
      );
    });

    it('keeps unknown string fields and drops unknown non-string fields, as kubelet ignores them', () => {
      const entry = {
        auth: ALICE,
        serveraddress: 'r.io',
        'x-note': 'kept',
        port: 5000,
        insecure: true,
        nested: { a: 'b' },
        list: ['x'],
        nothing: null,
      };
      expect(canonicalOf(parseEntry(entry, 'r.io'))).to.equal(
        `{"auths":{"r.io":{"auth":"${ALICE}","serveraddress":"r.io","x-note":"kept"}}}`,
      );
    });

    it('keeps an entry without credentials, which kubelet accepts', () => {
      expect(canonicalOf(parseEntry({}, 'r.io'))).to.equal('{"auths":{"r.io":{}}}');
    });
  });

  describe('legacy dockercfg', () => {
    it('converts the bare registry map of a dockercfg secret to the auths form', () => {
      const source = `{ "r.io": { "email": "a@example.com", "auth": "${unpadded(b64('alice:pw'))}" } }`;
      expect(canonicalOf(parseSourceSecret(dockercfg(source)))).to.equal(
        `{"auths":{"r.io":{"auth":"${b64('alice:pw')}","email":"a@example.com"}}}`,
      );
    });

    it('gives the same bytes as the equivalent dockerconfigjson secret', () => {
      const auths = { 'r.io': { auth: ALICE }, 'q.io': { username: 'u', password: 'p' } };
      const legacy = parseSourceSecret(dockercfg(auths));
      const modern = parseSourceSecret(dockerconfigjson({ auths }));
      expect(canonicalOf(legacy)).to.equal(canonicalOf(modern));
      expect(legacy.ok && legacy.dataBase64).to.equal(modern.ok && modern.dataBase64);
    });

    it('validates dockercfg entries like dockerconfigjson ones', () => {
      expect(failureOf(parseSourceSecret(dockercfg({ 'r.io': { auth: b64('no-colon') } })))).to.contain(
        'r.io',
      );
      expect(failureOf(parseSourceSecret(dockercfg({ 'r.io': { password: 5 } })))).to.contain('password');
    });

    it('rejects a dockercfg map with no registries', () => {
      expect(failureOf(parseSourceSecret(dockercfg({})))).to.match(/no registries/);
    });
  });

  describe('type and data key', () => {
    it('rejects a secret of another type, naming it and the two accepted types', () => {
      const secret = { type: 'Opaque', data: dockerconfigjson({ auths: { 'r.io': {} } }).data };
      const message = failureOf(parseSourceSecret(secret), 'SourceWrongType');
      expect(message).to.contain('"Opaque"').and.contain(DOCKER_CONFIG_JSON).and.contain(DOCKER_CFG);
      expect(
        failureOf(parseSourceSecret({ type: 'kubernetes.io/basic-auth' }), 'SourceWrongType'),
      ).to.contain('kubernetes.io/basic-auth');
    });

    it('rejects a secret without a type', () => {
      const message = failureOf(parseSourceSecret({ data: {} }), 'SourceWrongType');
      expect(message).to.contain('no type').and.contain(DOCKER_CONFIG_JSON).and.contain(DOCKER_CFG);
    });

    it('rejects a secret without the data key of its type', () => {
      expect(failureOf(parseSourceSecret({ type: DOCKER_CONFIG_JSON }))).to.match(
        /\.dockerconfigjson is missing/,
      );
      expect(failureOf(parseSourceSecret({ type: DOCKER_CFG, data: {} }))).to.match(/\.dockercfg is missing/);
    });

    it('reads only the data key that matches the type', () => {
      const secret = { type: DOCKER_CONFIG_JSON, data: { '.dockercfg': b64('{"r.io":{}}') } };
      expect(failureOf(parseSourceSecret(secret))).to.match(/\.dockerconfigjson is missing/);
    });
  });

  describe('data value', () => {
    it('rejects a data value that is not valid base64', () => {
      for (const value of ['not base64!', 'eyJhI', 'e30===', ' e30=']) {
        const secret = { type: DOCKER_CONFIG_JSON, data: { '.dockerconfigjson': value } };
        expect(failureOf(parseSourceSecret(secret))).to.match(/not valid base64/);
      }
    });

    it('rejects an empty data value', () => {
      expect(failureOf(parseSourceSecret(dockerconfigjson('')))).to.match(/empty/);
    });

    it('rejects content that is not valid UTF-8', () => {
      const bytes = Buffer.concat([
        Buffer.from('{"auths":{"r.io":{"username":"'),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('"}}}'),
      ]);
      expect(failureOf(parseSourceSecret(dockerconfigjson(bytes)))).to.match(/not valid UTF-8/);
    });

    it('rejects content that is not valid JSON, without quoting it', () => {
      for (const text of ['{"auths":', '{"auths":{"r.io":{}}', "{'auths':{}}", '{"auths":{}} trailing']) {
        expect(failureOf(parseSourceSecret(dockerconfigjson(text)))).to.equal(
          '.dockerconfigjson is not valid JSON',
        );
      }
    });

    it("rejects a byte order mark, as Go's JSON decoder does", () => {
      expect(failureOf(parseSourceSecret(dockerconfigjson('\ufeff{"auths":{"r.io":{}}}')))).to.match(
        /not valid JSON/,
      );
    });

    it('rejects JSON that is not an object', () => {
      for (const text of ['[]', '"auths"', 'null', '5', 'true']) {
        expect(failureOf(parseSourceSecret(dockerconfigjson(text)))).to.match(/not a JSON object/);
        expect(failureOf(parseSourceSecret(dockercfg(text)))).to.match(/not a JSON object/);
      }
    });

    it('rejects a source over 1 MiB and accepts one of exactly 1 MiB', () => {
      const json = '{"auths":{"r.io":{}}}';
      const exact = json + ' '.repeat(1024 * 1024 - json.length);
      expect(canonicalOf(parseSourceSecret(dockerconfigjson(exact)))).to.equal(json);
      expect(failureOf(parseSourceSecret(dockerconfigjson(`${exact} `)))).to.match(/exceeds 1 MiB/);
    });
  });

  describe('auths', () => {
    it('rejects a document without auths', () => {
      for (const source of [{}, { credsStore: 'desktop' }, { 'r.io': { auth: ALICE } }]) {
        expect(failureOf(parseSourceSecret(dockerconfigjson(source)))).to.match(/no auths member/);
      }
    });

    it('rejects auths that is not an object', () => {
      for (const auths of [[], [{ 'r.io': {} }], 'r.io', null, 5, true]) {
        expect(failureOf(parseSourceSecret(dockerconfigjson({ auths })))).to.match(
          /auths .*not a JSON object/,
        );
      }
    });

    it('rejects auths with no registries', () => {
      expect(failureOf(parseSourceSecret(dockerconfigjson({ auths: {} })))).to.match(/no registries/);
    });

    it('rejects an empty registry key', () => {
      const source = { auths: { 'r.io': { auth: ALICE }, '': { auth: ALICE } } };
      expect(failureOf(parseSourceSecret(dockerconfigjson(source)))).to.match(/empty registry key/);
    });

    it('rejects a registry entry that is not an object, naming the registry', () => {
      for (const entry of ['x', 5, true, null, [], [{ auth: ALICE }]]) {
        expect(failureOf(parseEntry(entry, 'r.io'))).to.equal(
          'registry "r.io": the entry is not a JSON object',
        );
      }
    });
  });

  describe('entry fields', () => {
    it('rejects a known field that is not a string, naming the registry and the field', () => {
      for (const field of ['username', 'password', 'email', 'auth', 'identitytoken', 'registrytoken']) {
        for (const value of [5, true, {}, ['x'], { value: 'x' }]) {
          const message = failureOf(parseEntry({ [field]: value }, 'r.io'));
          expect(message).to.equal(`registry "r.io": field ${field} is not a string`);
        }
      }
    });

    it('treats a known field that is null as absent, as Go does', () => {
      expect(canonicalOf(parseEntry({ username: 'alice', password: null, auth: null }, 'r.io'))).to.equal(
        '{"auths":{"r.io":{"username":"alice"}}}',
      );
    });

    it('reads differently-cased field names as Go does, and emits them in lower case', () => {
      const source = {
        Auths: { 'r.io': { USERNAME: 'alice', Password: 'pw', Auth: unpadded(b64('alice:pw')) } },
      };
      expect(canonicalOf(parseSourceSecret(dockerconfigjson(source)))).to.equal(
        `{"auths":{"r.io":{"auth":"${b64('alice:pw')}","password":"pw","username":"alice"}}}`,
      );
    });

    it('folds the long s and the Kelvin sign into field names, as Go does', () => {
      expect(
        canonicalOf(parseEntry({ 'u\u017fername': 'alice', 'identityto\u212aen': 'tok' }, 'r.io')),
      ).to.equal('{"auths":{"r.io":{"identitytoken":"tok","username":"alice"}}}');
    });

    it('validates a differently-cased auth rather than passing it through to kubelet', () => {
      expect(failureOf(parseEntry({ AUTH: 'not base64!' }, 'r.io'))).to.match(
        /field auth is not valid base64/,
      );
      expect(failureOf(parseEntry({ Password: 5 }, 'r.io'))).to.match(/field password is not a string/);
    });

    it('rejects two spellings of one field, which Go would resolve by document order', () => {
      expect(failureOf(parseEntry({ auth: ALICE, Auth: b64('bob:pw') }, 'r.io'))).to.match(
        /registry "r.io": field auth is spelt 2 ways/,
      );
      const source = { auths: { 'r.io': {} }, AUTHS: { 'q.io': {} } };
      expect(failureOf(parseSourceSecret(dockerconfigjson(source)))).to.match(/field auths is spelt 2 ways/);
    });
  });

  describe('auth field', () => {
    it('accepts an unpadded auth and re-encodes it padded', () => {
      for (const credential of ['alice:pw', 'alice:pwd1']) {
        const auth = b64(credential);
        expect(auth).to.match(/=$/);
        expect(canonicalOf(parseEntry({ auth: unpadded(auth) }, 'r.io'))).to.equal(
          `{"auths":{"r.io":{"auth":"${auth}"}}}`,
        );
      }
    });

    it('keeps a padded auth as it is', () => {
      expect(canonicalOf(parseEntry({ auth: ALICE }, 'r.io'))).to.equal(
        `{"auths":{"r.io":{"auth":"${ALICE}"}}}`,
      );
    });

    it('keeps an empty auth, for which kubelet uses username and password', () => {
      expect(canonicalOf(parseEntry({ auth: '', username: 'u', password: 'p' }, 'r.io'))).to.equal(
        '{"auths":{"r.io":{"auth":"","password":"p","username":"u"}}}',
      );
    });

    it('rejects an auth that is not standard base64: other characters, wrong padding, impossible length', () => {
      const good = b64('alice:pw'); // 'YWxpY2U6cHc='
      const bad = [
        'YWxpY2U6cHc-', // URL-safe alphabet
        'YWxpY2U6_Hc=',
        'YWxp Y2U6cHc=',
        `${good}=`, // too much padding
        `${unpadded(good)}==`,
        'YWxpY2U6cHc=YWxp', // padding inside
        'YWxpY', // a length no encoding produces
        '=',
        'YQ=', // padded but not a whole quantum
      ];
      for (const auth of bad) {
        expect(failureOf(parseEntry({ auth }, 'r.io'))).to.equal(
          'registry "r.io": field auth is not valid base64',
        );
      }
    });

    it('accepts an auth wrapped over lines, as the decoder of Go does, and writes it without the breaks', () => {
      expect(canonicalOf(parseEntry({ auth: 'YWxpY2U6\ncHc=' }, 'r.io'))).to.equal(
        '{"auths":{"r.io":{"auth":"YWxpY2U6cHc="}}}',
      );
      expect(canonicalOf(parseEntry({ auth: 'YWxp\r\nY2U6cHc=\n' }, 'r.io'))).to.equal(
        '{"auths":{"r.io":{"auth":"YWxpY2U6cHc="}}}',
      );
    });

    it('rejects an auth without a colon, as kubelet does', () => {
      for (const credential of ['alice', 'alicepw', 'alice;pw']) {
        expect(failureOf(parseEntry({ auth: b64(credential) }, 'r.io'))).to.equal(
          `registry "r.io": field auth does not decode to user:password (no ':')`,
        );
      }
    });

    it('accepts an auth whose password has colons or is empty, as kubelet splits on the first colon', () => {
      for (const credential of ['alice:p:w', 'alice:', ':', ':pw']) {
        expect(canonicalOf(parseEntry({ auth: unpadded(b64(credential)) }, 'r.io'))).to.equal(
          `{"auths":{"r.io":{"auth":"${b64(credential)}"}}}`,
        );
      }
    });

    it('accepts an auth whose bytes are not UTF-8, re-encoding the same bytes', () => {
      const auth = b64(new Uint8Array([0xff, 0x3a, 0xfe]));
      expect(canonicalOf(parseEntry({ auth }, 'r.io'))).to.equal(`{"auths":{"r.io":{"auth":"${auth}"}}}`);
    });
  });

  describe('error messages', () => {
    const SECRET = 'S3CRET-xyz';
    const forbidden = [SECRET, b64(SECRET), unpadded(b64(SECRET)), ALICE, unpadded(ALICE)];
    const malformed: [string, SourceSecretData][] = [
      [
        'wrong type',
        { type: 'Opaque', data: dockerconfigjson({ auths: { 'r.io': { password: SECRET } } }).data },
      ],
      ['data value not base64', { type: DOCKER_CONFIG_JSON, data: { '.dockerconfigjson': SECRET } }],
      ['invalid JSON', dockerconfigjson(`{"auths":{"r.io":{"password":"${SECRET}"}`)],
      ['invalid JSON near the value', dockerconfigjson(`{"auths":{"r.io":{"password":${SECRET}}}}`)],
      [
        'invalid UTF-8',
        dockerconfigjson(
          Buffer.concat([
            Buffer.from(`{"auths":{"r.io":{"password":"${SECRET}`),
            Buffer.from([0xff, 0x22, 0x7d, 0x7d, 0x7d]),
          ]),
        ),
      ],
      ['document not an object', dockerconfigjson(JSON.stringify(SECRET))],
      ['auths missing', dockerconfigjson({ credsStore: SECRET, other: { auth: ALICE } })],
      ['auths not an object', dockerconfigjson({ auths: SECRET })],
      ['auths empty', dockerconfigjson({ auths: {}, credHelpers: { 'r.io': SECRET } })],
      ['entry not an object', dockerconfigjson({ auths: { 'r.io': SECRET } })],
      ['password not a string', dockerconfigjson({ auths: { 'r.io': { password: [SECRET], auth: ALICE } } })],
      [
        'auth not a string',
        dockerconfigjson({ auths: { 'r.io': { auth: { value: ALICE }, password: SECRET } } }),
      ],
      ['auth not base64', dockerconfigjson({ auths: { 'r.io': { auth: SECRET, password: SECRET } } })],
      ['auth over-padded', dockerconfigjson({ auths: { 'r.io': { auth: `${ALICE}=` } } })],
      [
        'auth without colon',
        dockerconfigjson({ auths: { 'r.io': { auth: b64(SECRET), password: SECRET } } }),
      ],
      ['two spellings', dockerconfigjson({ auths: { 'r.io': { auth: ALICE, Auth: b64(`bob:${SECRET}`) } } })],
      ['empty registry key', dockerconfigjson({ auths: { '': { password: SECRET, auth: ALICE } } })],
      ['legacy auth without colon', dockercfg({ 'r.io': { auth: b64(SECRET), password: SECRET } })],
      [
        'too large',
        dockerconfigjson(`{"auths":{"r.io":{"password":"${SECRET}"}}}${' '.repeat(1024 * 1024)}`),
      ],
    ];

    it('never contain a credential value, for any kind of failure', () => {
      for (const [name, secret] of malformed) {
        const result = parseSourceSecret(secret);
        if (result.ok) return expect.fail(`${name}: expected a failure`);
        for (const value of forbidden) {
          expect(result.message, `${name}: ${result.message}`).not.to.contain(value);
        }
      }
    });
  });
});

// --- property tests ---

interface Credential {
  user: string;
  password: string;
  withAuth: boolean;
  withFields: boolean;
  email: string | undefined;
  extras: Record<string, string>;
  ignored: Record<string, unknown>;
}

interface Rendering {
  seed: number;
  legacy: boolean;
  padded: boolean;
  topLevelExtras: boolean;
}

const textArb = fc.string({ unit: 'binary', maxLength: 16 });
const registryArb = fc.oneof(
  fc.domain(),
  fc.constantFrom(
    'https://index.docker.io/v1/',
    '*.azurecr.io',
    'localhost:5000/team',
    '10',
    '9',
    '__proto__',
  ),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 16 }),
);
// Prefixed names can never fold to a known field name.
const extraNameArb = (prefix: string) => fc.string({ maxLength: 8 }).map((s) => `${prefix}${s}`);
const credentialArb = (withAuth: fc.Arbitrary<boolean>): fc.Arbitrary<Credential> =>
  fc.record({
    user: textArb,
    password: textArb,
    withAuth,
    withFields: fc.boolean(),
    email: fc.option(textArb, { nil: undefined }),
    extras: fc.dictionary(extraNameArb('x-'), textArb, { maxKeys: 3 }),
    ignored: fc.dictionary(
      extraNameArb('y-'),
      fc.oneof(
        fc.integer(),
        fc.boolean(),
        fc.constant(null),
        fc.array(fc.integer()),
        fc.dictionary(fc.string(), fc.string()),
      ),
      { maxKeys: 2 },
    ),
  });
const credentialsArb = (withAuth: fc.Arbitrary<boolean> = fc.boolean()) =>
  fc.uniqueArray(fc.tuple(registryArb, credentialArb(withAuth)), {
    minLength: 1,
    maxLength: 5,
    selector: ([registry]) => registry,
  });
const renderingArb: fc.Arbitrary<Rendering> = fc.record({
  seed: fc.integer(),
  legacy: fc.boolean(),
  padded: fc.boolean(),
  topLevelExtras: fc.boolean(),
});

function entryOf(c: Credential, padded: boolean): Record<string, unknown> {
  const auth = b64(`${c.user}:${c.password}`);
  return Object.fromEntries([
    ...(c.withAuth ? [['auth', padded ? auth : unpadded(auth)]] : []),
    ...(c.withFields
      ? [
          ['username', c.user],
          ['password', c.password],
        ]
      : []),
    ...(c.email === undefined ? [] : [['email', c.email]]),
    ...Object.entries(c.extras),
    ...Object.entries(c.ignored),
  ]);
}

/** A small seeded generator, so a rendering is reproducible from its seed. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** JSON with object members in random order and random whitespace between tokens. */
function render(value: unknown, random: () => number): string {
  const ws = () => ['', ' ', '\n', '\t', '\r\n    ', '  '][Math.floor(random() * 6)];
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${ws()}${value.map((v) => `${render(v, random)}${ws()}`).join(',')}]`;
  const members = Object.entries(value)
    .map((member) => ({ member, order: random() }))
    .sort((a, b) => a.order - b.order)
    .map(({ member: [k, v] }) => `${ws()}${JSON.stringify(k)}${ws()}:${ws()}${render(v, random)}${ws()}`);
  return `{${members.join(',')}${ws()}}`;
}

function secretOf(credentials: [string, Credential][], rendering: Rendering): SourceSecretData {
  const random = mulberry32(rendering.seed);
  const auths = Object.fromEntries(credentials.map(([r, c]) => [r, entryOf(c, rendering.padded)]));
  if (rendering.legacy) return dockercfg(render(auths, random));
  const extras = rendering.topLevelExtras
    ? { credsStore: 'desktop', HttpHeaders: { 'User-Agent': 'x' } }
    : {};
  return dockerconfigjson(render({ ...extras, auths }, random));
}

describe('source credential parsing: properties', () => {
  it('is idempotent: a canonical output parses to itself', () => {
    fc.assert(
      fc.property(credentialsArb(), renderingArb, (credentials, rendering) => {
        const first = parseSourceSecret(secretOf(credentials, rendering));
        if (!first.ok) return expect.fail(first.message);
        const again = parseSourceSecret({
          type: DOCKER_CONFIG_JSON,
          data: { '.dockerconfigjson': first.dataBase64 },
        });
        if (!again.ok) return expect.fail(again.message);
        expect(again.canonical).to.equal(first.canonical);
        expect(again.dataBase64).to.equal(first.dataBase64);
        expect(again.registries).to.deep.equal(first.registries);
      }),
    );
  });

  it('gives the same output whatever the key order, whitespace, auth padding and format of the input', () => {
    fc.assert(
      fc.property(
        credentialsArb(),
        fc.array(renderingArb, { minLength: 2, maxLength: 4 }),
        (credentials, renderings) => {
          const outputs = renderings.map((rendering) =>
            canonicalOf(parseSourceSecret(secretOf(credentials, rendering))),
          );
          for (const output of outputs) expect(output).to.equal(outputs[0]);
        },
      ),
    );
  });

  it('gives back user:password when decoding the canonical auth, padded', () => {
    fc.assert(
      fc.property(credentialsArb(fc.constant(true)), renderingArb, (credentials, rendering) => {
        const auths = JSON.parse(canonicalOf(parseSourceSecret(secretOf(credentials, rendering)))).auths;
        for (const [registry, c] of credentials) {
          const auth: string = auths[registry].auth;
          expect(auth.length % 4).to.equal(0);
          expect(Buffer.from(auth, 'base64')).to.deep.equal(Buffer.from(`${c.user}:${c.password}`, 'utf8'));
        }
      }),
    );
  });

  it('never throws, whatever the data', () => {
    const documentArb = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.jsonValue().map((v) => JSON.stringify({ auths: v })),
      fc.jsonValue().map((v) => JSON.stringify({ auths: { 'r.io': v } })),
      fc.dictionary(fc.string(), fc.jsonValue()).map((v) => JSON.stringify({ auths: { 'r.io': v } })),
    );
    fc.assert(
      fc.property(fc.constantFrom(DOCKER_CONFIG_JSON, DOCKER_CFG), documentArb, (type, text) => {
        const key = type === DOCKER_CONFIG_JSON ? '.dockerconfigjson' : '.dockercfg';
        const result = parseSourceSecret({ type, data: { [key]: b64(text) } });
        expect(result.ok || result.reason === 'SourceMalformed').to.equal(true);
      }),
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (value) => {
        const result = parseSourceSecret({ type: DOCKER_CONFIG_JSON, data: { '.dockerconfigjson': value } });
        expect(result.ok).to.equal(false);
      }),
    );
  });
});
