/**
 * A JSON reader that sees a document exactly as Go's `encoding/json` does, for the parts of its
 * behaviour that differ from `JSON.parse` and matter to kubelet's reading of a pull secret.
 *
 * Guarantees:
 * - Accepts and refuses exactly the documents Go's scanner accepts and refuses: RFC 8259 syntax on
 *   bytes, nothing but whitespace after the value, at most 10,000 nested arrays and objects (Go's
 *   `maxNestingDepth`; `JSON.parse` has no such limit).
 * - Object members are kept in document order, duplicates included (`JSON.parse` keeps only the
 *   last one, at the first one's position, and moves integer-like keys first). What a duplicate
 *   means depends on the Go type it is decoded into; the caller decides (see credential.ts).
 * - Strings are decoded as Go's `unquote` does: invalid UTF-8 is not an error, each byte of an
 *   invalid sequence becomes U+FFFD; an escaped surrogate that is not part of a valid pair becomes
 *   U+FFFD. So every string returned is well-formed UTF-16.
 * - Numbers, booleans, arrays, and objects nested deeper than `KEPT_DEPTH` are checked but not kept:
 *   a pull secret reads nothing there (such a value only ever means "not a string").
 *
 * Errors: `GoJsonSyntaxError` with the byte offset (never the content: the bytes are a credential).
 */

import { decodeRune, fromUnits, pushRune } from './goutf8.ts';

export type GoJsonValue =
  | { kind: 'object'; members: [string, GoJsonValue][] }
  | { kind: 'string'; value: string }
  | { kind: 'array' }
  | { kind: 'number' }
  | { kind: 'bool' }
  | { kind: 'null' };

export class GoJsonSyntaxError extends Error {
  readonly offset: number;
  constructor(reason: string, offset: number) {
    super(`${reason} at byte ${offset}`);
    this.offset = offset;
  }
}

/** Go's `maxNestingDepth`. */
const MAX_DEPTH = 10_000;

/** Objects nested deeper than this are checked but their members are not kept. */
const KEPT_DEPTH = 3;

const ARRAY: GoJsonValue = { kind: 'array' };
const SKIPPED_OBJECT: GoJsonValue = { kind: 'object', members: [] };
const NUMBER: GoJsonValue = { kind: 'number' };
const BOOL: GoJsonValue = { kind: 'bool' };
const NULL: GoJsonValue = { kind: 'null' };

export function parseGoJson(bytes: Uint8Array): GoJsonValue {
  const reader = new Reader(bytes);
  reader.skipSpace();
  const value = reader.value(0);
  reader.skipSpace();
  if (reader.pos < bytes.length) reader.fail('data after the top-level value');
  return value;
}

class Reader {
  pos = 0;
  private readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  fail(reason: string): never {
    throw new GoJsonSyntaxError(reason, this.pos);
  }

  skipSpace(): void {
    const b = this.bytes;
    while (this.pos < b.length) {
      const c = b[this.pos];
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.pos++;
    }
  }

  /** The value at `pos`, inside `depth` open containers. */
  value(depth: number): GoJsonValue {
    const c = this.bytes[this.pos];
    if (c === 0x7b && depth < KEPT_DEPTH) return this.object(depth + 1);
    if (c === 0x7b || c === 0x5b) return this.skip(depth);
    return this.scalar();
  }

  private scalar(): GoJsonValue {
    const c = this.bytes[this.pos];
    switch (c) {
      case 0x22: // "
        return { kind: 'string', value: this.string() };
      case 0x74: // t
        this.literal('true');
        return BOOL;
      case 0x66: // f
        this.literal('false');
        return BOOL;
      case 0x6e: // n
        this.literal('null');
        return NULL;
      default:
        if (c === 0x2d || (c !== undefined && c >= 0x30 && c <= 0x39)) {
          this.number();
          return NUMBER;
        }
        return this.fail(c === undefined ? 'unexpected end of input' : 'invalid character');
    }
  }

  /** An object whose members are kept (`depth` counts it). */
  private object(depth: number): GoJsonValue {
    this.pos++;
    this.skipSpace();
    const members: [string, GoJsonValue][] = [];
    if (this.bytes[this.pos] === 0x7d) {
      this.pos++;
      return { kind: 'object', members };
    }
    for (;;) {
      const name = this.memberName();
      members.push([name, this.value(depth)]);
      this.skipSpace();
      const c = this.bytes[this.pos];
      if (c !== 0x2c && c !== 0x7d) this.fail("expected ',' or '}' after a member");
      this.pos++;
      if (c === 0x7d) return { kind: 'object', members };
      this.skipSpace();
    }
  }

  /** `"name"` and the colon after it; leaves `pos` at the value. */
  private memberName(): string {
    if (this.bytes[this.pos] !== 0x22) this.fail('expected a member name');
    const name = this.string();
    this.skipSpace();
    if (this.bytes[this.pos] !== 0x3a) this.fail("expected ':' after a member name");
    this.pos++;
    this.skipSpace();
    return name;
  }

  /**
   * Checks a value without keeping its contents, iteratively (a hostile document may nest 10,000
   * levels, more than the call stack holds). An object comes back without members.
   */
  private skip(depth: number): GoJsonValue {
    const b = this.bytes;
    const closers: number[] = [];
    let result: GoJsonValue = NULL;
    for (;;) {
      const c = b[this.pos];
      if (c === 0x7b || c === 0x5b) {
        if (depth + closers.length + 1 > MAX_DEPTH) this.fail('exceeded max depth');
        if (closers.length === 0) result = c === 0x7b ? SKIPPED_OBJECT : ARRAY;
        const close = c === 0x7b ? 0x7d : 0x5d;
        this.pos++;
        this.skipSpace();
        if (b[this.pos] === close) this.pos++;
        else {
          closers.push(close);
          if (close === 0x7d) this.memberName();
          continue;
        }
      } else {
        const value = this.scalar();
        if (closers.length === 0) result = value;
      }
      // A value is complete: close what ends here, up to the next value.
      for (;;) {
        const close = closers.at(-1);
        if (close === undefined) return result;
        this.skipSpace();
        const d = b[this.pos];
        if (d === close) {
          this.pos++;
          closers.pop();
          continue;
        }
        if (d !== 0x2c) this.fail(close === 0x7d ? "expected ',' or '}'" : "expected ',' or ']'");
        this.pos++;
        this.skipSpace();
        if (close === 0x7d) this.memberName();
        break;
      }
    }
  }

  private literal(word: string): void {
    for (let i = 0; i < word.length; i++) {
      if (this.bytes[this.pos] !== word.charCodeAt(i)) this.fail('invalid literal');
      this.pos++;
    }
  }

  private number(): void {
    const b = this.bytes;
    const digit = () => {
      const c = b[this.pos];
      return c !== undefined && c >= 0x30 && c <= 0x39;
    };
    const digits = () => {
      if (!digit()) this.fail('invalid number');
      while (digit()) this.pos++;
    };
    if (b[this.pos] === 0x2d) this.pos++;
    if (b[this.pos] === 0x30) this.pos++;
    else digits();
    if (b[this.pos] === 0x2e) {
      this.pos++;
      digits();
    }
    if (b[this.pos] === 0x65 || b[this.pos] === 0x45) {
      this.pos++;
      if (b[this.pos] === 0x2b || b[this.pos] === 0x2d) this.pos++;
      digits();
    }
  }

  /** A quoted string at `pos`, decoded as Go does. */
  string(): string {
    const b = this.bytes;
    this.pos++; // opening quote
    const units: number[] = [];
    for (;;) {
      const c = b[this.pos];
      if (c === undefined) this.fail('unterminated string');
      if (c === 0x22) {
        this.pos++;
        return fromUnits(units);
      }
      if (c < 0x20) this.fail('control character in a string');
      if (c === 0x5c) {
        this.escape(units);
        continue;
      }
      if (c < 0x80) {
        units.push(c);
        this.pos++;
        continue;
      }
      const [rune, size] = decodeRune(b, this.pos);
      pushRune(units, rune);
      this.pos += size;
    }
  }

  private escape(units: number[]): void {
    const b = this.bytes;
    const c = b[this.pos + 1];
    const simple: Record<number, number> = {
      34: 0x22,
      92: 0x5c,
      47: 0x2f,
      98: 0x08,
      102: 0x0c,
      110: 0x0a,
      114: 0x0d,
      116: 0x09,
    };
    if (c !== undefined && simple[c] !== undefined) {
      units.push(simple[c]);
      this.pos += 2;
      return;
    }
    if (c !== 0x75) {
      this.pos++;
      this.fail('invalid escape');
    }
    const first = this.hex4(this.pos + 2);
    if (first === undefined) {
      this.pos += 2;
      this.fail('invalid \\u escape');
    }
    this.pos += 6;
    if (first < 0xd800 || first > 0xdfff) {
      units.push(first);
      return;
    }
    // Go pairs a high surrogate with an immediately following escaped low one; anything else is U+FFFD.
    const second = b[this.pos] === 0x5c && b[this.pos + 1] === 0x75 ? this.hex4(this.pos + 2) : undefined;
    if (first < 0xdc00 && second !== undefined && second >= 0xdc00 && second <= 0xdfff) {
      units.push(first, second);
      this.pos += 6;
      return;
    }
    units.push(0xfffd);
  }

  private hex4(at: number): number | undefined {
    let n = 0;
    for (let i = at; i < at + 4; i++) {
      const c = this.bytes[i];
      if (c === undefined) return undefined;
      const d =
        c >= 0x30 && c <= 0x39
          ? c - 0x30
          : c >= 0x41 && c <= 0x46
            ? c - 0x37
            : c >= 0x61 && c <= 0x66
              ? c - 0x57
              : -1;
      if (d < 0) return undefined;
      n = n * 16 + d;
    }
    return n;
  }
}
