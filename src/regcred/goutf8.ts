/**
 * UTF-8 as Go's `unicode/utf8` reads it, for gojson.ts: a valid, shortest-form, non-surrogate
 * sequence is a rune; anything else is U+FFFD for one byte. (The WHATWG decoder behind
 * TextDecoder replaces a maximal invalid subpart with one U+FFFD, which differs.)
 */
/**
 * Go's `utf8.DecodeRune` on the bytes at `at` (a byte >= 0x80 is there): the rune and its length,
 * or U+FFFD and length 1 for anything that is not a valid, shortest-form, non-surrogate encoding.
 */
export function decodeRune(b: Uint8Array, at: number): [number, number] {
  const c0 = b[at]!;
  const cont = (i: number, lo = 0x80, hi = 0xbf) => {
    const c = b[at + i];
    return c !== undefined && c >= lo && c <= hi ? c & 0x3f : -1;
  };
  if (c0 >= 0xc2 && c0 <= 0xdf) {
    const c1 = cont(1);
    if (c1 >= 0) return [((c0 & 0x1f) << 6) | c1, 2];
  } else if (c0 >= 0xe0 && c0 <= 0xef) {
    const c1 = cont(1, c0 === 0xe0 ? 0xa0 : 0x80, c0 === 0xed ? 0x9f : 0xbf);
    const c2 = c1 >= 0 ? cont(2) : -1;
    if (c2 >= 0) return [((c0 & 0x0f) << 12) | (c1 << 6) | c2, 3];
  } else if (c0 >= 0xf0 && c0 <= 0xf4) {
    const c1 = cont(1, c0 === 0xf0 ? 0x90 : 0x80, c0 === 0xf4 ? 0x8f : 0xbf);
    const c2 = c1 >= 0 ? cont(2) : -1;
    const c3 = c2 >= 0 ? cont(3) : -1;
    if (c3 >= 0) return [((c0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3, 4];
  }
  return [0xfffd, 1];
}

export function pushRune(units: number[], rune: number): void {
  if (rune < 0x10000) units.push(rune);
  else units.push(0xd800 + ((rune - 0x10000) >> 10), 0xdc00 + ((rune - 0x10000) & 0x3ff));
}

export function fromUnits(units: number[]): string {
  let out = '';
  for (let i = 0; i < units.length; i += 8192) out += String.fromCharCode(...units.slice(i, i + 8192));
  return out;
}
