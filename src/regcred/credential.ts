/**
 * Reads a source pull Secret as kubelet would, and produces the canonical `.dockerconfigjson` for its copies.
 *
 * Why so strict: kubelet parses every pull secret a Pod references before pulling anything, and if one of
 * them fails to parse, every image pull of that Pod fails, public images included. A bad source copied into
 * every tenant would break every new Pod there, so a source that kubelet could not read is never propagated.
 *
 * Validated: the type (`kubernetes.io/dockerconfigjson`, or legacy `kubernetes.io/dockercfg` whose JSON is
 * the bare registry map); its data key; base64, UTF-8, JSON and the 1 MiB limit of the value; an `auths`
 * object with at least one registry, no empty registry key, each entry an object; the fields kubelet (or
 * Docker) knows are strings (a number there fails Go's json.Unmarshal for the whole secret); a non-empty
 * `auth` is standard base64, padded or not, of bytes containing `:` (kubelet splits on the first one).
 * Like Go's encoding/json, field names match case-insensitively (`Auth` is kubelet's `auth`), so every
 * spelling is validated and emitted in lower case; two spellings of one field are rejected as ambiguous.
 * A known field that is `null` is absent to Go, and dropped. Unknown fields are kept when they are strings
 * and dropped otherwise, as are top-level members other than `auths`. Registry keys are kept as given.
 *
 * Canonical form: `{"auths":{...}}`, object keys sorted at every level, no whitespace, `auth` re-encoded
 * as padded standard base64. Identical credentials give identical bytes whatever the source's format, key
 * order, whitespace or padding, so copies can be compared byte for byte.
 *
 * Error messages name keys and field names only, never a value: a credential must not reach a status.
 */
import { Buffer } from 'node:buffer';

export interface SourceSecretData {
  type?: string;
  /** Values are base64, as in the Kubernetes API. */
  data?: Record<string, string>;
}

export type ParseResult =
  | {
      ok: true;
      /** The canonical JSON text. */
      canonical: string;
      /** Base64 of `canonical`: the value for a copy's `data['.dockerconfigjson']`. */
      dataBase64: string;
      /** The registry keys, sorted, for messages. */
      registries: string[];
    }
  | { ok: false; reason: 'SourceWrongType' | 'SourceMalformed'; message: string };

export const DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';
export const DOCKER_CFG = 'kubernetes.io/dockercfg';

const MAX_BYTES = 1024 * 1024;
const KNOWN_FIELDS = ['username', 'password', 'email', 'auth', 'identitytoken', 'registrytoken'];

type JsonObject = Record<string, unknown>;
type Canonical = string | Map<string, Canonical>;

class Malformed extends Error {}

export function parseSourceSecret(secret: SourceSecretData): ParseResult {
  const { type } = secret;
  if (type !== DOCKER_CONFIG_JSON && type !== DOCKER_CFG) {
    const found = type ? `type ${JSON.stringify(type)} is not accepted` : 'no type';
    const message = `${found}; expected ${DOCKER_CONFIG_JSON} or ${DOCKER_CFG}`;
    return { ok: false, reason: 'SourceWrongType', message };
  }
  const key = type === DOCKER_CONFIG_JSON ? '.dockerconfigjson' : '.dockercfg';
  try {
    const document = decodeDocument(key, secret.data?.[key]);
    const auths = new Map<string, Canonical>();
    for (const [registry, entry] of Object.entries(type === DOCKER_CFG ? document : authsOf(document, key))) {
      if (registry === '') fail(`${key} has an empty registry key`);
      auths.set(registry, canonicalEntry(registry, entry));
    }
    if (auths.size === 0) fail(`${key} has no registries`);
    const canonical = stringify(new Map([['auths', auths]]));
    const bytes = Buffer.from(canonical, 'utf8');
    if (bytes.length > MAX_BYTES) fail(`the canonical form of ${key} exceeds 1 MiB`);
    const registries = [...auths.keys()].sort(compare);
    return { ok: true, canonical, dataBase64: bytes.toString('base64'), registries };
  } catch (err) {
    if (err instanceof Malformed) return { ok: false, reason: 'SourceMalformed', message: err.message };
    throw err;
  }
}

function fail(message: string): never {
  throw new Malformed(message);
}

function decodeDocument(key: string, value: string | undefined): JsonObject {
  if (value === undefined) fail(`data key ${key} is missing`);
  const bytes = decodeBase64(value);
  if (!bytes) fail(`data key ${key} is not valid base64`);
  if (bytes.length > MAX_BYTES) fail(`${key} exceeds 1 MiB`);
  if (bytes.length === 0) fail(`${key} is empty`);
  let text: string;
  try {
    // A byte order mark is kept, so JSON.parse rejects it as Go's decoder does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    fail(`${key} is not valid UTF-8`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    fail(`${key} is not valid JSON`); // the parser's message quotes the content
  }
  if (!isObject(document)) fail(`${key} is not a JSON object`);
  return document;
}

function authsOf(document: JsonObject, key: string): JsonObject {
  const spelling = spellingOf(document, 'auths', key);
  if (spelling === undefined) fail(`${key} has no auths member`);
  const auths = document[spelling];
  if (!isObject(auths)) fail(`auths in ${key} is not a JSON object`);
  return auths;
}

function canonicalEntry(registry: string, entry: unknown): Map<string, Canonical> {
  const shown = registry.length > 100 ? `${registry.slice(0, 100)}...` : registry; // messages go to a status
  const where = `registry ${JSON.stringify(shown)}`;
  if (!isObject(entry)) fail(`${where}: the entry is not a JSON object`);
  const fields = new Map<string, Canonical>();
  for (const [field, value] of Object.entries(entry)) {
    if (!KNOWN_FIELDS.includes(foldName(field)) && typeof value === 'string') fields.set(field, value);
  }
  for (const name of KNOWN_FIELDS) {
    const spelling = spellingOf(entry, name, where);
    const value = spelling === undefined ? null : entry[spelling];
    if (value === null) continue;
    if (typeof value !== 'string') fail(`${where}: field ${name} is not a string`);
    fields.set(name, name === 'auth' ? canonicalAuth(where, value) : value);
  }
  return fields;
}

/** Padded standard base64 of the same bytes; kubelet's rules for what it accepts. */
function canonicalAuth(where: string, auth: string): string {
  if (auth === '') return auth; // kubelet then uses username and password
  // Go's base64 decoder skips line breaks, so kubelet accepts a wrapped auth (`base64` without -w0).
  const bytes = decodeBase64(auth.replace(/[\r\n]/g, ''));
  if (!bytes) fail(`${where}: field auth is not valid base64`);
  if (!bytes.includes(0x3a)) fail(`${where}: field auth does not decode to user:password (no ':')`);
  return bytes.toString('base64');
}

/** Standard alphabet, padded or unpadded (Go's StdEncoding or RawStdEncoding); anything else is refused. */
function decodeBase64(text: string): Buffer | undefined {
  const match = /^[A-Za-z0-9+/]*(=*)$/.exec(text);
  const padding = match?.[1]?.length ?? -1;
  const rest = (text.length - padding) % 4;
  if (padding < 0 || rest === 1 || (padding > 0 && rest + padding !== 4)) return undefined;
  return Buffer.from(text, 'base64');
}

/** The one key Go's encoding/json would read as field `name`, if any. */
function spellingOf(object: JsonObject, name: string, where: string): string | undefined {
  const spellings = Object.keys(object).filter((k) => foldName(k) === name);
  if (spellings.length > 1) {
    fail(`${where}: field ${name} is spelt ${spellings.length} ways; field names are case-insensitive`);
  }
  return spellings[0];
}

/** Go's case folding as far as it can make an ASCII name: ASCII letters, K (U+212A, lowered to k) and ſ (U+017F). */
function foldName(name: string): string {
  return name.toLowerCase().replace(/\u017f/g, 's');
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** JSON with keys sorted, from Maps (a plain object would put integer-like keys first). */
function stringify(value: Canonical): string {
  if (typeof value === 'string') return JSON.stringify(value);
  const members = [...value].sort(([a], [b]) => compare(a, b));
  return `{${members.map(([k, v]) => `${JSON.stringify(k)}:${stringify(v)}`).join(',')}}`;
}
