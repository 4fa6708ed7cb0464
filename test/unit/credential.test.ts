/**
 * The source pull Secret reader: it reads what kubelet reads (the table in
 * test/support/credential-cases.ts, which the kubelet comparison test also runs through kubelet's
 * own code), writes one canonical form, byte for byte, and never quotes a credential in a message.
 */
import { Buffer } from 'node:buffer';
import { expect } from 'chai';
import fc from 'fast-check';
import {
  DOCKER_CFG,
  DOCKER_CONFIG_JSON,
  type ParseResult,
  parseSourceSecret,
  registryLabel,
  type SourceSecretData,
} from '../../src/regcred/credential.ts';
import { b64, CASES, dockercfg, dockerconfigjson, unpadded } from '../support/credential-cases.ts';

function canonicalOf(result: ParseResult): string {
  if (!result.ok) return expect.fail(`expected success, got ${result.reason}: ${result.message}`);
  return result.canonical;
}

describe('source credential parsing', () => {
  describe('the case table', () => {
    for (const c of CASES) {
      it(c.name, () => {
        const result = parseSourceSecret(c.secret);
        if ('canonical' in c.expect) {
          expect(canonicalOf(result)).to.equal(c.expect.canonical);
          if (!result.ok) return;
          expect(result.dataBase64).to.equal(Buffer.from(result.canonical, 'utf8').toString('base64'));
          expect([...result.entries.keys()]).to.deep.equal(
            Object.keys(JSON.parse(result.canonical).auths).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
          );
        } else {
          if (result.ok) return expect.fail(`expected ${c.expect.refused}, got ${result.canonical}`);
          expect(result.reason).to.equal(c.expect.refused);
          expect(result.message).to.match(c.expect.message);
        }
      });
    }
  });

  it('gives a legacy dockercfg secret the same bytes as the equivalent dockerconfigjson one', () => {
    const auths = { 'r.io': { auth: b64('alice:pw') }, 'q.io': { username: 'u', password: 'p' } };
    const legacy = parseSourceSecret(dockercfg(auths));
    const modern = parseSourceSecret(dockerconfigjson({ auths }));
    expect(canonicalOf(legacy)).to.equal(canonicalOf(modern));
  });

  it('gives identical bytes for the same credentials whatever the key order, whitespace or auth padding', () => {
    const auth = b64('alice:pw');
    const a = `{"auths":{"r.io":{"auth":"${auth}","username":"alice"},"q.io":{"password":"x"}}}`;
    const b = `{ "auths" : {\n\t"q.io" : { "password" : "x" } ,\r\n "r.io":{"username":"alice",  "auth":"${unpadded(auth)}"} } }`;
    expect(canonicalOf(parseSourceSecret(dockerconfigjson(b)))).to.equal(
      canonicalOf(parseSourceSecret(dockerconfigjson(a))),
    );
  });

  it('rejects a source over 1 MiB', () => {
    const json = '{"auths":{"r.io":{}}}';
    const result = parseSourceSecret(dockerconfigjson(json + ' '.repeat(1024 * 1024 - json.length + 1)));
    expect(result.ok === false && result.message).to.match(/exceeds 1 MiB/);
  });

  it('rejects a data value that is not valid base64', () => {
    for (const value of ['not base64!', 'eyJhI', 'e30===', ' e30=']) {
      const result = parseSourceSecret({ type: DOCKER_CONFIG_JSON, data: { '.dockerconfigjson': value } });
      expect(result.ok === false && result.message, value).to.match(/not valid base64/);
    }
  });

  describe('registry keys in messages', () => {
    it('shows the host and port kubelet would use, without userinfo, path, query or fragment', () => {
      expect(registryLabel('registry.example.com', 0)).to.equal('registry registry.example.com');
      expect(registryLabel('https://index.docker.io/v1/', 0)).to.equal('registry index.docker.io/v1/');
      expect(registryLabel('localhost:5000', 0)).to.equal('registry localhost:5000');
      expect(registryLabel('[::1]:5000/', 0)).to.equal('registry [::1]:5000');
      expect(registryLabel('*.azurecr.io', 0)).to.equal('registry *.azurecr.io');
      for (const key of [
        'https://bot:PASSWORD@registry.example.com',
        'bot:PASSWORD@registry.example.com',
        'http://b@t:PASS@WORD@registry.example.com/',
        'registry.example.com/PASSWORD',
        'registry.example.com?PASSWORD',
        'registry.example.com#PASSWORD',
        'registry.example.com/v2/?token=PASSWORD',
      ]) {
        expect(registryLabel(key, 0), key).to.equal(
          'registry registry.example.com (rest of the key not shown)',
        );
      }
    });

    it('names a key by its position when its host is not a plain host name', () => {
      for (const key of [
        'https://bot:pa/ssWORD@host.example',
        'https://bot:12345/PASSWORD@host.example',
        'bot:12345?PASSWORD@host.example',
        'bot:PASSWORD',
        'PASS WORD',
        '',
        'a'.repeat(101),
      ]) {
        expect(registryLabel(key, 2), key).to.equal('registry key #3');
      }
    });

    it('never lets a credential value or the secret parts of a key into a message', () => {
      const SECRET = 'S3CRET-xyz';
      const forbidden = [SECRET, b64(SECRET), unpadded(b64(SECRET)), b64(`bob:${SECRET}`)];
      const hostile: SourceSecretData[] = [
        { type: 'Opaque', data: dockerconfigjson({ auths: { 'r.io': { password: SECRET } } }).data },
        { type: DOCKER_CONFIG_JSON, data: { '.dockerconfigjson': SECRET } },
        dockerconfigjson(`{"auths":{"r.io":{"password":"${SECRET}"}`),
        dockerconfigjson(`{"auths":{"r.io":{"password":${SECRET}}}}`),
        dockerconfigjson(JSON.stringify(SECRET)),
        dockerconfigjson({ credsStore: SECRET, other: { auth: b64(`bob:${SECRET}`) } }),
        dockerconfigjson({ auths: SECRET }),
        dockerconfigjson({ auths: { 'r.io': SECRET } }),
        dockerconfigjson({ auths: { 'r.io': { password: [SECRET] } } }),
        dockerconfigjson({ auths: { 'r.io': { auth: SECRET, password: SECRET } } }),
        dockerconfigjson({ auths: { 'r.io': { auth: b64(SECRET) } } }),
        dockerconfigjson({ auths: { [`https://bot:${SECRET}@r.io`]: { auth: 5 } } }),
        dockerconfigjson({ auths: { [`bot:${SECRET}@r.io:5000`]: { auth: 'x' } } }),
        dockerconfigjson({ auths: { [`https://bot:a/${SECRET}@r.io`]: { auth: 'x' } } }),
        dockerconfigjson({ auths: { [`r.io/${SECRET}?${SECRET}#${SECRET}`]: { auth: 'x' } } }),
        dockerconfigjson({ auths: { [SECRET.repeat(20)]: { auth: 'x' } } }),
        dockerconfigjson({ auths: { 'r.io': {} }, HttpHeaders: { [SECRET]: 5 } }),
        dockercfg({ auths: { 'r.io': { auth: b64(`bob:${SECRET}`) } } }),
        dockerconfigjson(`{"auths":{"r.io":{"password":"${SECRET}"}}}${' '.repeat(1024 * 1024)}`),
      ];
      for (const secret of hostile) {
        const result = parseSourceSecret(secret);
        if (result.ok) return expect.fail(`expected a failure for ${JSON.stringify(secret)}`);
        for (const value of forbidden) expect(result.message).not.to.contain(value);
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
        expect([...again.entries.keys()]).to.deep.equal([...first.entries.keys()]);
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

  it('gives back the exact user:password bytes when decoding the canonical auth, padded', () => {
    fc.assert(
      fc.property(credentialsArb(fc.constant(true)), renderingArb, (credentials, rendering) => {
        const auths = JSON.parse(canonicalOf(parseSourceSecret(secretOf(credentials, rendering)))).auths;
        for (const [registry, c] of credentials) {
          const auth: string | undefined = auths[registry].auth;
          if (c.user === '' && c.password === '') {
            expect(auth).to.equal(undefined); // nothing to authenticate with: an empty entry
            continue;
          }
          if (auth === undefined) return expect.fail(`no auth for ${registry}`);
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
        expect(
          result.ok || result.reason === 'SourceMalformed' || result.reason === 'SourceWrongType',
        ).to.equal(true);
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
