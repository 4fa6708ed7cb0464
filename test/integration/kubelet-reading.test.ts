/**
 * regcred reads a source pull Secret exactly as kubelet does, proven with kubelet's own code
 * (`k8s.io/kubernetes/pkg/credentialprovider`, run by controlplane/k8s/cmd/kubelet-creds): for every
 * case of the credential table and for generated hostile documents, regcred accepts exactly what
 * kubelet reads (same registries, usernames, passwords, emails), kubelet reads the copy regcred
 * writes exactly as it reads the source, and regcred refuses only what kubelet refuses, ignores,
 * or reads as useless (no registry; a dockercfg Secret holding a dockerconfigjson document).
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
import { b64, bytes, CASES } from '../support/credential-cases.ts';
import { type KubeletCredential, type KubeletReading, kubeletReads } from '../support/kubelet.ts';

type Normalised = Record<string, { username: string; password: string; email: string }>;

/** kubelet's registries with exact bytes (base64) for username and password. */
function normalise(registries: Record<string, KubeletCredential>): Normalised {
  return Object.fromEntries(
    Object.entries(registries).map(([key, c]) => [
      key,
      {
        username: c.usernameBase64 ?? b64(c.username),
        password: c.passwordBase64 ?? b64(c.password),
        email: c.email,
      },
    ]),
  );
}

function regcredReading(result: Extract<ParseResult, { ok: true }>): Normalised {
  return Object.fromEntries(
    [...result.entries].map(([key, e]) => [
      key,
      { username: e.username.toString('base64'), password: e.password.toString('base64'), email: e.email },
    ]),
  );
}

/** What kubelet must do with a Secret that regcred refuses, judged from regcred's reason. */
function kubeletVerdictFor(result: Extract<ParseResult, { ok: false }>): string {
  if (/is not accepted|^no type|is missing|is empty/.test(result.message)) return 'ignored';
  if (/holds no registry|has no auths member/.test(result.message)) return 'no registry';
  if (/holds a kubernetes\.io\/dockerconfigjson document/.test(result.message))
    return 'a registry named auths';
  return 'error';
}

function verdictOf(reading: KubeletReading): string {
  if (reading.verdict !== 'ok') return reading.verdict;
  const keys = Object.keys(reading.registries);
  if (keys.length === 0) return 'no registry';
  return keys.includes('auths') ? 'a registry named auths' : 'ok';
}

/** Every source through regcred and kubelet, then every copy regcred would write through kubelet. */
async function compare(sources: SourceSecretData[]): Promise<((i: number) => void)[]> {
  const results = sources.map((s) => parseSourceSecret(s));
  const copies = results.flatMap((r) =>
    r.ok ? [{ type: DOCKER_CONFIG_JSON, data: { '.dockerconfigjson': r.dataBase64 } }] : [],
  );
  const [fromSources, fromCopies] = await Promise.all([kubeletReads(sources), kubeletReads(copies)]);
  let copy = 0;
  return results.map((result, i) => {
    const kubelet = fromSources[i]!;
    if (!result.ok) {
      const expected = kubeletVerdictFor(result);
      return () =>
        expect(
          verdictOf(kubelet),
          `regcred refused (${result.message}); kubelet: ${JSON.stringify(kubelet)}`,
        ).to.equal(expected);
    }
    const ofCopy = fromCopies[copy++]!;
    return () => {
      if (kubelet.verdict !== 'ok')
        return expect.fail(`regcred accepted what kubelet answers ${JSON.stringify(kubelet)}`);
      const theirs = normalise(kubelet.registries);
      expect(regcredReading(result), 'regcred reads the source as kubelet does').to.deep.equal(theirs);
      if (ofCopy.verdict !== 'ok')
        return expect.fail(`kubelet cannot read the copy: ${JSON.stringify(ofCopy)}`);
      expect(normalise(ofCopy.registries), 'kubelet reads the copy as it reads the source').to.deep.equal(
        theirs,
      );
    };
  });
}

// --- generated documents: the corners where Go's decoding and JSON.parse part ---

const utf8 = (s: string) => Array.from(Buffer.from(s, 'utf8'));
/** Pieces of a JSON string body: plain text, colons, escapes, surrogates, and bytes that are not UTF-8. */
const pieceArb = fc.oneof(
  fc.stringMatching(/^[a-z0-9.]{1,4}$/).map(utf8),
  fc.constantFrom(
    utf8(':'),
    utf8('\\u00e9'),
    utf8('\\ud800'),
    utf8('\\udc00x'),
    utf8('\\ud83d\\ude00'),
    utf8('\\n'),
    utf8('é'),
    utf8('😀'),
    [0xff],
    [0xe2, 0x82],
    [0xed, 0xa0, 0x80],
    [0xc0, 0xaf],
    [0xf4, 0x90, 0x80, 0x80],
  ),
);
const stringArb = fc.array(pieceArb, { maxLength: 4 }).map((pieces) => [0x22, ...pieces.flat(), 0x22]);
const authArb = fc
  .tuple(
    fc.uint8Array({ maxLength: 12 }),
    fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    fc.boolean(),
    fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('', '\\n', '\\r\\n') },
      { weight: 1, arbitrary: fc.constantFrom('=', ' ', '-') },
    ),
  )
  .map(([raw, colon, padded, noise]) => {
    const plain = Buffer.concat([Buffer.from(raw), Buffer.from(colon ? ':x' : '')]).toString('base64');
    const text = padded ? plain : plain.replace(/=+$/, '');
    const at = Math.floor(text.length / 2);
    return utf8(`"${text.slice(0, at)}${noise}${text.slice(at)}"`);
  });
const scalarArb = fc.constantFrom(
  utf8('null'),
  utf8('5'),
  utf8('true'),
  utf8('[]'),
  utf8('{}'),
  utf8('["x"]'),
);
const fieldNameArb = fc.constantFrom(
  'username',
  'Username',
  'password',
  'PASSWORD',
  'pa\u017f\u017fword',
  'email',
  'auth',
  'Auth',
  'identitytoken',
  'x-other',
);
const fieldArb = fc.tuple(
  fieldNameArb,
  fc.oneof(
    { weight: 4, arbitrary: stringArb },
    { weight: 3, arbitrary: authArb },
    { weight: 1, arbitrary: scalarArb },
  ),
);
const objectOf = (members: [number[], number[]][]) => [
  0x7b,
  ...members.flatMap(([k, v], i) => [...(i ? [0x2c] : []), ...k, 0x3a, ...v]),
  0x7d,
];
const name = (s: string) => utf8(JSON.stringify(s));
const entryArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.array(fieldArb, { maxLength: 3 }).map((fs) => objectOf(fs.map(([k, v]) => [name(k), v]))),
  },
  { weight: 1, arbitrary: scalarArb },
);
const registryKeyArb = fc.oneof(
  fc.constantFrom('r.io', 'R.io', 'q.io:5000', 'auths', '', 'https://u:p@r.io/v2/').map(name),
  stringArb,
);
const registriesArb = fc
  .array(fc.tuple(registryKeyArb, entryArb), { maxLength: 3 })
  .map((members) => objectOf(members));
const topMemberArb = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.tuple(fc.constantFrom('auths', 'Auths', 'AUTHS', 'auth\u017f').map(name), registriesArb),
  },
  fc.tuple(fc.constantFrom('auths').map(name), scalarArb),
  fc.tuple(
    fc.constantFrom('HttpHeaders', 'httpheaders').map(name),
    fc.oneof(
      scalarArb,
      fc.array(fc.tuple(stringArb, fc.oneof(stringArb, scalarArb)), { maxLength: 2 }).map(objectOf),
    ),
  ),
  fc.tuple(fc.constantFrom('credsStore', 'x').map(name), fc.oneof(stringArb, scalarArb)),
);
const sourceArb: fc.Arbitrary<SourceSecretData> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.array(topMemberArb, { minLength: 1, maxLength: 3 }).map((members) => ({
      type: DOCKER_CONFIG_JSON,
      data: { '.dockerconfigjson': b64(bytes(objectOf(members))) },
    })),
  },
  {
    weight: 1,
    arbitrary: registriesArb.map((doc) => ({ type: DOCKER_CFG, data: { '.dockercfg': b64(bytes(doc)) } })),
  },
);

describe('regcred reads pull Secrets exactly as kubelet does (kubelet’s own code decides)', () => {
  describe('every case of the credential table', () => {
    let checks: ((i: number) => void)[] = [];
    before(async function () {
      this.timeout(120_000);
      checks = await compare(CASES.map((c) => c.secret));
    });
    CASES.forEach((c, i) => {
      it(c.name, () => checks[i]!(i));
    });
  });

  it('agrees on 2,000 generated documents with duplicates, case variants, nulls, wrong types and bad UTF-8', async function () {
    this.timeout(120_000);
    const sources = fc.sample(sourceArb, { numRuns: 2000, seed: 20261201 });
    const checks = await compare(sources);
    let refused = 0;
    checks.forEach((check, i) => {
      try {
        check(i);
      } catch (err) {
        throw new Error(`generated source ${i} (${JSON.stringify(sources[i])}): ${(err as Error).message}`);
      }
      if (!parseSourceSecret(sources[i]!).ok) refused++;
    });
    // The generator must reach both sides of the verdict, or the comparison proves little.
    expect(refused).to.be.within(400, 1600);
  });
});
