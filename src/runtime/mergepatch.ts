/**
 * The JSON merge patch (RFC 7386) that turns `current` into `desired`, or `undefined` when they are
 * equal. Objects are diffed key by key (a key missing from `desired` becomes `null`); arrays and
 * scalars are replaced whole when they differ.
 */
export function mergePatch(current: unknown, desired: unknown): unknown {
  if (!isObject(current) || !isObject(desired)) return deepEqual(current, desired) ? undefined : desired;
  const patch: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(desired)) {
    if (v === undefined) continue;
    const sub = mergePatch(current[k], v);
    if (sub !== undefined) patch[k] = sub;
  }
  for (const k of Object.keys(current))
    if (desired[k] === undefined && current[k] !== undefined) patch[k] = null;
  return Object.keys(patch).length > 0 ? patch : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a))
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}
