/**
 * Label selectors and namespace-name globs, as pure functions.
 *
 * - `compileSelector` validates a `LabelSelector` and returns a matcher with the semantics of
 *   Kubernetes' `metav1.LabelSelectorAsSelector`: matchLabels and every matchExpression are ANDed;
 *   `NotIn` and `DoesNotExist` hold for an absent label; an empty selector matches everything,
 *   including objects without labels. An invalid selector yields `{ ok: false, message }`, the message
 *   naming every offending key, value or operator (for the status: the CRD schema catches most, not all).
 * - `isValidLabelKey` / `isValidLabelValue`: Kubernetes' qualified-name and label-value rules.
 * - `compileGlobs`: anchored whole-name patterns where `*` is any run of characters (possibly empty),
 *   `?` exactly one character (code point), and everything else literal. No RegExp is built, so no
 *   escaping is needed and no pattern can backtrack catastrophically.
 */
import type { LabelSelector } from '../api/v1alpha1.ts';

/** A validated selector, ready to match. */
export interface CompiledSelector {
  matches(labels: Record<string, string> | undefined): boolean;
}

export type SelectorResult = { ok: true; selector: CompiledSelector } | { ok: false; message: string };

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

/** Why `key` is not a valid qualified label key (`[prefix/]name`), or undefined if it is. */
function labelKeyProblem(key: string): string | undefined {
  const parts = key.split('/');
  if (parts.length > 2) return "more than one '/'";
  const name = parts.length === 2 ? parts[1]! : key;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (prefix === '') return 'empty prefix';
    if (prefix.length > 253) return 'prefix longer than 253 characters';
    if (!DNS_SUBDOMAIN.test(prefix)) return 'prefix is not a DNS-1123 subdomain';
  }
  if (name === '') return 'empty name';
  if (name.length > 63) return 'name longer than 63 characters';
  if (!LABEL_NAME.test(name)) {
    return "name must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric";
  }
  return undefined;
}

export function isValidLabelKey(key: string): boolean {
  return labelKeyProblem(key) === undefined;
}

export function isValidLabelValue(value: string): boolean {
  return value.length <= 63 && LABEL_VALUE.test(value);
}

type Labels = Record<string, string>;
type Requirement = (labels: Labels) => boolean;

const has = (labels: Labels, key: string): boolean => Object.hasOwn(labels, key);

export function compileSelector(selector: LabelSelector): SelectorResult {
  const problems: string[] = [];
  const requirements: Requirement[] = [];
  const q = (s: string) => JSON.stringify(s);
  const checkKey = (where: string, key: string) => {
    const problem = labelKeyProblem(key);
    if (problem !== undefined) problems.push(`${where}: key ${q(key)} is not a valid label key (${problem})`);
  };
  const checkValue = (where: string, value: string) => {
    if (!isValidLabelValue(value)) problems.push(`${where}: value ${q(value)} is not a valid label value`);
  };

  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    checkKey('matchLabels', key);
    checkValue(`matchLabels[${q(key)}]`, value);
    requirements.push((labels) => has(labels, key) && labels[key] === value);
  }

  for (const [i, expr] of (selector.matchExpressions ?? []).entries()) {
    const where = `matchExpressions[${i}]`;
    const { key, operator } = expr;
    const values = expr.values ?? [];
    checkKey(where, key);
    if (!OPERATORS.includes(operator)) {
      problems.push(`${where}: operator ${q(operator)} is not one of ${OPERATORS.join(', ')}`);
      continue;
    }
    if (operator === 'In' || operator === 'NotIn') {
      if (values.length === 0) problems.push(`${where}: operator ${operator} needs at least one value`);
      for (const [j, v] of values.entries()) checkValue(`${where}.values[${j}]`, v);
      const set = new Set(values);
      requirements.push(
        operator === 'In'
          ? (labels) => has(labels, key) && set.has(labels[key]!)
          : (labels) => !has(labels, key) || !set.has(labels[key]!),
      );
    } else {
      if (values.length > 0) problems.push(`${where}: operator ${operator} takes no values`);
      requirements.push(operator === 'Exists' ? (labels) => has(labels, key) : (labels) => !has(labels, key));
    }
  }

  if (problems.length > 0) return { ok: false, message: problems.join('; ') };
  return {
    ok: true,
    selector: { matches: (labels) => requirements.every((r) => r(labels ?? {})) },
  };
}

/** A run of pattern characters between stars: literal code points, or `?` for any one. */
type Segment = readonly string[];

/** Whether `seg` matches `chars` starting at `pos` (the caller ensures it fits). */
function segmentAt(seg: Segment, chars: readonly string[], pos: number): boolean {
  for (let i = 0; i < seg.length; i++) {
    if (seg[i] !== '?' && seg[i] !== chars[pos + i]) return false;
  }
  return true;
}

/**
 * A matcher for one pattern containing a wildcard. Split at the stars, the first segment must match
 * at the start, the last at the end, and the middle ones in order in between; taking each middle
 * segment's leftmost match is optimal, so this is O(name × pattern) with no backtracking.
 */
function compileGlob(pattern: string): (chars: readonly string[]) => boolean {
  const segments: Segment[] = pattern.split('*').map((s) => [...s]);
  if (segments.length === 1) {
    const only = segments[0]!;
    return (chars) => chars.length === only.length && segmentAt(only, chars, 0);
  }
  const head = segments[0]!;
  const tail = segments[segments.length - 1]!;
  const middle = segments.slice(1, -1).filter((s) => s.length > 0);
  return (chars) => {
    const end = chars.length - tail.length;
    if (end < head.length || !segmentAt(head, chars, 0) || !segmentAt(tail, chars, end)) return false;
    let pos = head.length;
    for (const seg of middle) {
      while (pos + seg.length <= end && !segmentAt(seg, chars, pos)) pos++;
      if (pos + seg.length > end) return false;
      pos += seg.length;
    }
    return true;
  };
}

/** Compiles glob patterns (only `*` = any run of characters, `?` = one character; everything else literal). */
export function compileGlobs(patterns: readonly string[]): (name: string) => boolean {
  const exact = new Set<string>();
  const globs: ((chars: readonly string[]) => boolean)[] = [];
  for (const p of patterns) {
    if (p.includes('*') || p.includes('?')) globs.push(compileGlob(p));
    else exact.add(p);
  }
  return (name) => {
    if (exact.has(name)) return true;
    if (globs.length === 0) return false;
    const chars = [...name];
    return globs.some((g) => g(chars));
  };
}
