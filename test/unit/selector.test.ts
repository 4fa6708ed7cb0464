/**
 * Label selector compilation and matching (Kubernetes semantics), label key/value validation, and
 * namespace-name globs.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import type { LabelSelector } from '../../src/api/v1alpha1.ts';
import {
  type CompiledSelector,
  compileGlobs,
  compileSelector,
  isValidLabelKey,
  isValidLabelValue,
} from '../../src/regcred/selector.ts';

function compiled(selector: LabelSelector): CompiledSelector {
  const result = compileSelector(selector);
  if (!result.ok) throw new Error(`expected a valid selector, got: ${result.message}`);
  return result.selector;
}

function problem(selector: LabelSelector): string {
  const result = compileSelector(selector);
  if (result.ok) throw new Error('expected an invalid selector');
  return result.message;
}

type Expression = NonNullable<LabelSelector['matchExpressions']>[number];

const labelKey = fc.stringMatching(
  /^([a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?$/,
);
const labelValue = fc.stringMatching(/^(([A-Za-z0-9][-A-Za-z0-9_.]{0,10})?[A-Za-z0-9])?$/);

describe('label selector', () => {
  describe('matchLabels', () => {
    const selector = compiled({ matchLabels: { team: 'a', tier: 'prod' } });

    it('matches when every label is present with exactly that value', () => {
      expect(selector.matches({ team: 'a', tier: 'prod', extra: 'x' })).to.equal(true);
    });

    it('does not match when a label has another value', () => {
      expect(selector.matches({ team: 'a', tier: 'dev' })).to.equal(false);
    });

    it('does not match when a label is missing', () => {
      expect(selector.matches({ team: 'a' })).to.equal(false);
      expect(selector.matches(undefined)).to.equal(false);
    });

    it('does not mistake inherited object properties for labels', () => {
      const s = compiled({ matchExpressions: [{ key: 'constructor', operator: 'Exists' }] });
      expect(s.matches({})).to.equal(false);
      expect(
        compiled({ matchExpressions: [{ key: 'toString', operator: 'DoesNotExist' }] }).matches({}),
      ).to.equal(true);
    });
  });

  describe('matchExpressions', () => {
    const one = (expr: Expression) => compiled({ matchExpressions: [expr] });

    it('In matches a present label whose value is listed', () => {
      const s = one({ key: 'env', operator: 'In', values: ['dev', 'test'] });
      expect(s.matches({ env: 'test' })).to.equal(true);
      expect(s.matches({ env: 'prod' })).to.equal(false);
      expect(s.matches({})).to.equal(false);
    });

    it('NotIn matches a present label whose value is not listed', () => {
      const s = one({ key: 'env', operator: 'NotIn', values: ['dev', 'test'] });
      expect(s.matches({ env: 'prod' })).to.equal(true);
      expect(s.matches({ env: 'dev' })).to.equal(false);
    });

    it('NotIn matches when the label is absent', () => {
      const s = one({ key: 'env', operator: 'NotIn', values: ['dev'] });
      expect(s.matches({ other: 'dev' })).to.equal(true);
      expect(s.matches(undefined)).to.equal(true);
    });

    it('Exists matches a present label whatever its value, including empty', () => {
      const s = one({ key: 'env', operator: 'Exists' });
      expect(s.matches({ env: '' })).to.equal(true);
      expect(s.matches({ other: 'x' })).to.equal(false);
    });

    it('DoesNotExist matches only when the label is absent', () => {
      const s = one({ key: 'env', operator: 'DoesNotExist' });
      expect(s.matches({ other: 'x' })).to.equal(true);
      expect(s.matches(undefined)).to.equal(true);
      expect(s.matches({ env: '' })).to.equal(false);
    });

    it('accepts an empty values list for Exists and DoesNotExist', () => {
      expect(
        compileSelector({ matchExpressions: [{ key: 'a', operator: 'Exists', values: [] }] }).ok,
      ).to.equal(true);
    });
  });

  it('ANDs matchLabels and every expression', () => {
    const s = compiled({
      matchLabels: { team: 'a' },
      matchExpressions: [
        { key: 'env', operator: 'In', values: ['dev', 'prod'] },
        { key: 'legacy', operator: 'DoesNotExist' },
      ],
    });
    expect(s.matches({ team: 'a', env: 'dev' })).to.equal(true);
    expect(s.matches({ team: 'b', env: 'dev' })).to.equal(false);
    expect(s.matches({ team: 'a', env: 'test' })).to.equal(false);
    expect(s.matches({ team: 'a', env: 'dev', legacy: 'true' })).to.equal(false);
  });

  it('an empty selector matches everything, including objects without labels', () => {
    for (const selector of [
      {},
      { matchLabels: {} },
      { matchExpressions: [] },
      { matchLabels: {}, matchExpressions: [] },
    ]) {
      const s = compiled(selector);
      expect(s.matches(undefined)).to.equal(true);
      expect(s.matches({})).to.equal(true);
      expect(s.matches({ any: 'thing' })).to.equal(true);
    }
  });

  describe('validation', () => {
    const exprKey = (key: string) =>
      problem({
        matchExpressions: [
          { key: 'ok', operator: 'Exists' },
          { key, operator: 'Exists' },
        ],
      });

    it('rejects a key whose prefix is longer than 253 characters', () => {
      const prefix = `${'a'.repeat(250)}.com`;
      expect(exprKey(`${prefix}/name`)).to.equal(
        `matchExpressions[1]: key "${prefix}/name" is not a valid label key (prefix longer than 253 characters)`,
      );
    });

    it('rejects a key whose name is longer than 63 characters', () => {
      const name = 'n'.repeat(64);
      expect(exprKey(name)).to.equal(
        `matchExpressions[1]: key "${name}" is not a valid label key (name longer than 63 characters)`,
      );
    });

    it('accepts a key with a 253-character prefix and a 63-character name', () => {
      const prefix = Array.from({ length: 4 }, () => 'p'.repeat(62)).join('.');
      expect(`${prefix}.i`).to.have.length(253);
      expect(isValidLabelKey(`${prefix}.i/${'n'.repeat(63)}`)).to.equal(true);
    });

    it('rejects a key with characters not allowed in the name', () => {
      expect(exprKey('team name')).to.equal(
        `matchExpressions[1]: key "team name" is not a valid label key ` +
          `(name must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric)`,
      );
      expect(isValidLabelKey('-team')).to.equal(false);
      expect(isValidLabelKey('team_')).to.equal(false);
    });

    it('rejects a key with an uppercase or otherwise invalid prefix', () => {
      expect(exprKey('Example.com/team')).to.equal(
        'matchExpressions[1]: key "Example.com/team" is not a valid label key (prefix is not a DNS-1123 subdomain)',
      );
      expect(isValidLabelKey('example..com/team')).to.equal(false);
    });

    it('rejects a key with an empty name or an empty prefix', () => {
      expect(exprKey('example.com/')).to.equal(
        'matchExpressions[1]: key "example.com/" is not a valid label key (empty name)',
      );
      expect(exprKey('')).to.equal('matchExpressions[1]: key "" is not a valid label key (empty name)');
      expect(exprKey('/team')).to.equal(
        'matchExpressions[1]: key "/team" is not a valid label key (empty prefix)',
      );
    });

    it('rejects a key with a double slash', () => {
      expect(exprKey('a//b')).to.equal(
        `matchExpressions[1]: key "a//b" is not a valid label key (more than one '/')`,
      );
    });

    it('rejects an invalid key in matchLabels', () => {
      expect(problem({ matchLabels: { 'a b': 'x' } })).to.match(
        /^matchLabels: key "a b" is not a valid label key/,
      );
    });

    it('rejects invalid values in matchLabels and in expressions', () => {
      expect(problem({ matchLabels: { team: 'a b' } })).to.equal(
        'matchLabels["team"]: value "a b" is not a valid label value',
      );
      const long = 'v'.repeat(64);
      expect(problem({ matchExpressions: [{ key: 'env', operator: 'In', values: ['ok', long] }] })).to.equal(
        `matchExpressions[0].values[1]: value "${long}" is not a valid label value`,
      );
    });

    it('rejects In and NotIn without values', () => {
      expect(problem({ matchExpressions: [{ key: 'env', operator: 'In' }] })).to.equal(
        'matchExpressions[0]: operator In needs at least one value',
      );
      expect(problem({ matchExpressions: [{ key: 'env', operator: 'NotIn', values: [] }] })).to.equal(
        'matchExpressions[0]: operator NotIn needs at least one value',
      );
    });

    it('rejects Exists and DoesNotExist with values', () => {
      expect(problem({ matchExpressions: [{ key: 'env', operator: 'Exists', values: ['x'] }] })).to.equal(
        'matchExpressions[0]: operator Exists takes no values',
      );
      expect(
        problem({ matchExpressions: [{ key: 'env', operator: 'DoesNotExist', values: ['x'] }] }),
      ).to.equal('matchExpressions[0]: operator DoesNotExist takes no values');
    });

    it('rejects an unknown operator', () => {
      const expr = { key: 'env', operator: 'Equals', values: ['x'] } as unknown as Expression;
      expect(problem({ matchExpressions: [expr] })).to.equal(
        'matchExpressions[0]: operator "Equals" is not one of In, NotIn, Exists, DoesNotExist',
      );
    });

    it('reports every problem, not just the first', () => {
      expect(
        problem({ matchLabels: { 'a//b': 'x' }, matchExpressions: [{ key: 'env', operator: 'In' }] }),
      ).to.equal(
        `matchLabels: key "a//b" is not a valid label key (more than one '/'); ` +
          'matchExpressions[0]: operator In needs at least one value',
      );
    });

    it('accepts the empty label value and rejects values that start or end badly', () => {
      expect(isValidLabelValue('')).to.equal(true);
      expect(isValidLabelValue('a.b_c-d')).to.equal(true);
      expect(isValidLabelValue('v'.repeat(63))).to.equal(true);
      expect(isValidLabelValue('-a')).to.equal(false);
      expect(isValidLabelValue('a.')).to.equal(false);
    });
  });

  describe('properties', () => {
    it('matchLabels built from any subset of an object’s labels matches that object', () => {
      fc.assert(
        fc.property(
          fc
            .dictionary(labelKey, labelValue, { maxKeys: 8 })
            .chain((labels) => fc.tuple(fc.constant(labels), fc.subarray(Object.entries(labels)))),
          ([labels, subset]) => {
            expect(compiled({ matchLabels: Object.fromEntries(subset) }).matches(labels)).to.equal(true);
          },
        ),
      );
    });

    it('NotIn matches exactly when In does not for a present label, and always when it is absent', () => {
      const small = fc.constantFrom('a', 'b', 'c', 'd', '');
      fc.assert(
        fc.property(
          fc.array(small, { minLength: 1, maxLength: 4 }),
          fc.option(small, { nil: undefined }),
          (values, value) => {
            const inSel = compiled({ matchExpressions: [{ key: 'k', operator: 'In', values }] });
            const notIn = compiled({ matchExpressions: [{ key: 'k', operator: 'NotIn', values }] });
            const labels: Record<string, string> =
              value === undefined ? { other: 'a' } : { k: value, other: 'a' };
            if (value === undefined) {
              expect(notIn.matches(labels)).to.equal(true);
              expect(inSel.matches(labels)).to.equal(false);
            } else {
              expect(notIn.matches(labels)).to.equal(!inSel.matches(labels));
              expect(inSel.matches(labels)).to.equal(values.includes(value));
            }
          },
        ),
      );
    });

    it('isValidLabelKey and isValidLabelValue accept every generated valid key and value', () => {
      fc.assert(
        fc.property(labelKey, labelValue, (key, value) => {
          expect(isValidLabelKey(key)).to.equal(true);
          expect(isValidLabelValue(value)).to.equal(true);
        }),
      );
    });
  });
});

describe('globs', () => {
  it('a star matches any run of characters, including none', () => {
    const match = compileGlobs(['kube-*']);
    expect(match('kube-system')).to.equal(true);
    expect(match('kube-')).to.equal(true);
    expect(match('kube')).to.equal(false);
    expect(match('my-kube-system')).to.equal(false);
  });

  it('a question mark matches exactly one character', () => {
    const match = compileGlobs(['team-?']);
    expect(match('team-a')).to.equal(true);
    expect(match('team-')).to.equal(false);
    expect(match('team-ab')).to.equal(false);
  });

  it('stars and question marks combine anywhere in the pattern', () => {
    const match = compileGlobs(['*-?-*-prod']);
    expect(match('a-b-c-prod')).to.equal(true);
    expect(match('x-y-z-y-prod')).to.equal(true);
    expect(match('--b--prod')).to.equal(true);
    expect(match('a-bc-d-prod')).to.equal(false);
    expect(match('a-b-c-dev')).to.equal(false);
  });

  it('a pattern without wildcards is an exact, whole-name match', () => {
    const match = compileGlobs(['default']);
    expect(match('default')).to.equal(true);
    expect(match('default2')).to.equal(false);
    expect(match('my-default')).to.equal(false);
  });

  it('treats regular expression metacharacters as literal', () => {
    const match = compileGlobs(['a.b+c', '(x|y)*', '^z$']);
    expect(match('a.b+c')).to.equal(true);
    expect(match('axbbc')).to.equal(false);
    expect(match('(x|y)-anything')).to.equal(true);
    expect(match('x')).to.equal(false);
    expect(match('^z$')).to.equal(true);
    expect(match('z')).to.equal(false);
  });

  it('matches a name that any of several patterns matches', () => {
    const match = compileGlobs(['kube-*', 'default', 'team-?']);
    expect(['kube-public', 'default', 'team-x', 'team-xy', 'other'].filter(match)).to.deep.equal([
      'kube-public',
      'default',
      'team-x',
    ]);
  });

  it('no patterns match nothing', () => {
    expect(compileGlobs([])('anything')).to.equal(false);
    expect(compileGlobs([])('')).to.equal(false);
  });

  it('a question mark matches one character even outside the BMP', () => {
    expect(compileGlobs(['?'])('🚀')).to.equal(true);
  });

  describe('properties', () => {
    const noWildcards = fc.string({ unit: 'binary' }).filter((s) => !s.includes('*') && !s.includes('?'));

    it('a pattern without wildcards matches only the identical string', () => {
      fc.assert(
        fc.property(noWildcards, fc.string({ unit: 'binary' }), (pattern, name) => {
          const match = compileGlobs([pattern]);
          expect(match(pattern)).to.equal(true);
          expect(match(name)).to.equal(name === pattern);
        }),
      );
    });

    it('the pattern * matches every string', () => {
      const match = compileGlobs(['*']);
      fc.assert(
        fc.property(fc.string({ unit: 'binary' }), (name) => {
          expect(match(name)).to.equal(true);
        }),
      );
    });

    it('agrees with an escaped regular expression on small alphabets', () => {
      const toRegExp = (pattern: string) =>
        new RegExp(
          `^${[...pattern]
            .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
            .join('')}$`,
          'su',
        );
      fc.assert(
        fc.property(
          fc.string({ unit: fc.constantFrom('a', 'b', '.', '*', '?'), maxLength: 8 }),
          fc.string({ unit: fc.constantFrom('a', 'b', '.'), maxLength: 10 }),
          (pattern, name) => {
            expect(compileGlobs([pattern])(name)).to.equal(toRegExp(pattern).test(name));
          },
        ),
        { numRuns: 2000 },
      );
    });
  });
});
