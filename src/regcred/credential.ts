/**
 * Reads a source pull Secret exactly as kubelet does, and writes the canonical `.dockerconfigjson`
 * for its copies.
 *
 * Why exactly: kubelet parses every pull secret a Pod references before pulling anything, and if one
 * of them fails to parse, every image pull of that Pod fails, public images included. So a source
 * kubelet would refuse is never propagated, and a copy holds precisely what kubelet reads from the
 * source: kubelet reading the copy gets the same registries, usernames, passwords and emails.
 *
 * kubelet's reading (`pkg/credentialprovider`: `json.Unmarshal` into `DockerConfigJSON{Auths
 * map[string]DockerConfigEntry; HttpHeaders map[string]string}`, or the bare map for the legacy
 * `kubernetes.io/dockercfg`), as Go's `encoding/json` decodes it (gojson.ts reads the bytes):
 * - member names match fields case-insensitively (Go's folding: `AUTHS`, `Auth`, `uſername`); a
 *   field given twice takes the last value, except that a second `auths` object merges into the
 *   first (Go reuses the map) and `auths: null` empties it; a registry key given twice takes the
 *   last entry; a `null` field is no change; a `null` entry is an entry without credentials;
 * - a known field that is not a string (or `HttpHeaders` that is not a map of strings) fails the
 *   whole secret; unknown members are ignored whatever they hold;
 * - `auth`, when not empty, is standard base64 (padded if it ends in `=`, unpadded otherwise; line
 *   breaks skipped), split at its first `:` into username and password, which it overrides.
 *
 * regcred refuses more than kubelet in two cases only, both of which kubelet accepts as useless:
 * a credential with no registry, and a `dockercfg` Secret holding a `dockerconfigjson` document
 * (kubelet sees one registry named `auths`).
 *
 * Canonical form: `{"auths":{...}}`, keys sorted at every level, no whitespace; per registry
 * `auth` (padded base64 of the exact username:password bytes, whenever the username has no `:`),
 * `username` and `password` (when valid UTF-8) and `email`, each only when not empty. What kubelet
 * ignores (other fields, `HttpHeaders`, `credsStore`, ...) is not copied. Identical credentials give
 * identical bytes, so copies compare byte for byte.
 *
 * Messages never quote a value; registry keys appear only through `registryLabel`.
 */
import { Buffer, isUtf8 } from 'node:buffer';
import { GoJsonSyntaxError, type GoJsonValue, parseGoJson } from './gojson.ts';

export interface SourceSecretData {
  type?: string;
  /** Values are base64, as in the Kubernetes API. */
  data?: Record<string, string>;
}

/** What kubelet reads for one registry. */
export interface RegistryEntry {
  username: Buffer;
  password: Buffer;
  email: string;
}

export type ParseResult =
  | {
      ok: true;
      /** The canonical JSON text. */
      canonical: string;
      /** Base64 of `canonical`: the value for a copy's `data['.dockerconfigjson']`. */
      dataBase64: string;
      /** kubelet's reading, by registry key (keys sorted). */
      entries: Map<string, RegistryEntry>;
    }
  | { ok: false; reason: 'SourceWrongType' | 'SourceMalformed'; message: string };

export const DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';
export const DOCKER_CFG = 'kubernetes.io/dockercfg';

const MAX_BYTES = 1024 * 1024;
const ENTRY_FIELDS = ['username', 'password', 'email', 'auth'] as const;

class Refused extends Error {
  readonly reason: 'SourceWrongType' | 'SourceMalformed';
  constructor(message: string, reason: 'SourceWrongType' | 'SourceMalformed' = 'SourceMalformed') {
    super(message);
    this.reason = reason;
  }
}

function refuse(message: string): never {
  throw new Refused(message);
}

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
    const auths = type === DOCKER_CFG ? readDockercfg(document, key) : readDockerConfigJson(document, key);
    if (auths.size === 0) refuse(`${key} holds no registry`);
    const entries = new Map([...auths].sort(([a], [b]) => compare(a, b)));
    const canonical = `{"auths":{${[...entries].map(([k, e]) => `${JSON.stringify(k)}:${canonicalEntry(e)}`).join(',')}}}`;
    const bytes = Buffer.from(canonical, 'utf8');
    if (bytes.length > MAX_BYTES) refuse(`the canonical form of ${key} exceeds 1 MiB`);
    return { ok: true, canonical, dataBase64: bytes.toString('base64'), entries };
  } catch (err) {
    if (err instanceof Refused) return { ok: false, reason: err.reason, message: err.message };
    throw err;
  }
}

function decodeDocument(key: string, value: string | undefined): GoJsonValue {
  if (value === undefined) refuse(`data key ${key} is missing`);
  const bytes = decodeBase64(value, /=\s*$/.test(value));
  if (!bytes) refuse(`data key ${key} is not valid base64`);
  if (bytes.length > MAX_BYTES) refuse(`${key} exceeds 1 MiB`);
  if (bytes.length === 0) refuse(`${key} is empty`);
  try {
    return parseGoJson(bytes);
  } catch (err) {
    if (err instanceof GoJsonSyntaxError) refuse(`${key} is not valid JSON (${err.message})`);
    throw err;
  }
}

/** `DockerConfigJSON`: `auths` (merged across duplicates) and `HttpHeaders` (checked, not kept). */
function readDockerConfigJson(document: GoJsonValue, key: string): Map<string, RegistryEntry> {
  if (document.kind === 'null') return new Map();
  if (document.kind !== 'object') refuse(`${key} is not a JSON object`);
  let auths = new Map<string, RegistryEntry>();
  let named = false;
  for (const [name, value] of document.members) {
    const field = foldName(name);
    if (field === 'auths') {
      named = true;
      if (value.kind === 'null') auths = new Map();
      else if (value.kind === 'object') readRegistries(value, auths);
      else refuse(`auths in ${key} is not a JSON object`);
    } else if (field === 'httpheaders') {
      if (value.kind === 'null') continue;
      if (value.kind !== 'object' || value.members.some(([, v]) => v.kind !== 'string' && v.kind !== 'null'))
        refuse(`HttpHeaders in ${key} is not a map of strings (kubelet refuses the whole secret)`);
    }
  }
  if (!named) refuse(`${key} has no auths member`);
  return auths;
}

/** The legacy `DockerConfig`: the bare map of registries. */
function readDockercfg(document: GoJsonValue, key: string): Map<string, RegistryEntry> {
  if (document.kind === 'null') return new Map();
  if (document.kind !== 'object') refuse(`${key} is not a JSON object`);
  const registries = readRegistries(document, new Map());
  if (document.members.some(([name, value]) => name === 'auths' && value.kind === 'object')) {
    throw new Refused(
      `the Secret is of type ${DOCKER_CFG} but holds a ${DOCKER_CONFIG_JSON} document ({"auths": ...}): ` +
        'kubelet would read it as one registry named "auths" and use none of its credentials; ' +
        `recreate the Secret with type ${DOCKER_CONFIG_JSON} and data key .dockerconfigjson`,
      'SourceWrongType',
    );
  }
  return registries;
}

function readRegistries(
  object: Extract<GoJsonValue, { kind: 'object' }>,
  into: Map<string, RegistryEntry>,
): Map<string, RegistryEntry> {
  object.members.forEach(([registry, value], index) => {
    into.set(registry, readEntry(value, registryLabel(registry, index)));
  });
  return into;
}

/** `DockerConfigEntry.UnmarshalJSON`. */
function readEntry(value: GoJsonValue, where: string): RegistryEntry {
  const fields: Record<(typeof ENTRY_FIELDS)[number], string> = {
    username: '',
    password: '',
    email: '',
    auth: '',
  };
  if (value.kind !== 'null') {
    if (value.kind !== 'object') refuse(`${where}: the entry is not a JSON object`);
    for (const [name, v] of value.members) {
      const field = ENTRY_FIELDS.find((f) => f === foldName(name));
      if (field === undefined || v.kind === 'null') continue;
      if (v.kind !== 'string') refuse(`${where}: field ${field} is not a string`);
      fields[field] = v.value;
    }
  }
  const entry = {
    username: Buffer.from(fields.username, 'utf8'),
    password: Buffer.from(fields.password, 'utf8'),
    email: fields.email,
  };
  if (fields.auth === '') return entry;
  const auth = decodeBase64(fields.auth, /=[\s\u0085]*$/.test(fields.auth));
  if (!auth) refuse(`${where}: field auth is not valid base64`);
  const colon = auth.indexOf(0x3a);
  if (colon < 0) refuse(`${where}: field auth does not decode to user:password (no ':')`);
  return { ...entry, username: auth.subarray(0, colon), password: auth.subarray(colon + 1) };
}

function canonicalEntry(entry: RegistryEntry): string {
  const { username, password, email } = entry;
  const fields: [string, string][] = [];
  if (!username.includes(0x3a) && (username.length > 0 || password.length > 0))
    fields.push(['auth', Buffer.concat([username, Buffer.from(':'), password]).toString('base64')]);
  if (email) fields.push(['email', email]);
  const text = (b: Buffer) => (isUtf8(b) ? b.toString('utf8') : undefined);
  const [user, pass] = [text(username), text(password)];
  if (pass && user !== undefined) fields.push(['password', pass]);
  if (user && pass !== undefined) fields.push(['username', user]);
  return `{${fields.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
}

/**
 * Go's base64: `StdEncoding` (padding required) when `padded`, else `RawStdEncoding` (no padding
 * allowed); `\r` and `\n` are skipped anywhere; any other character outside the alphabet fails.
 */
function decodeBase64(text: string, padded: boolean): Buffer | undefined {
  const s = text.replace(/[\r\n]/g, '');
  const valid = padded
    ? /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)
    : /^[A-Za-z0-9+/]*$/.test(s) && s.length % 4 !== 1;
  return valid ? Buffer.from(s, 'base64') : undefined;
}

/**
 * A registry key as it may appear in a message: the host (and port) kubelet would resolve it to,
 * without userinfo, path, query or fragment, any of which can hold a secret. A key whose host is
 * not a plain host name or address is named by its position instead.
 */
export function registryLabel(registry: string, index: number): string {
  const withScheme = /^https?:\/\//.test(registry) ? registry : `https://${registry}`;
  const rest = withScheme.slice(withScheme.indexOf('//') + 2);
  const end = rest.search(/[/?#]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  const host = authority.slice(authority.lastIndexOf('@') + 1);
  const plain = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9*_-]+(?:\.[A-Za-z0-9*_-]+)*)(?::[0-9]{1,5})?$/.test(host);
  const path = end < 0 ? '' : rest.slice(end);
  // An @ after the host means userinfo whose password holds a / ? or #: what looks like the host
  // is the user name and the start of the password.
  if (!plain || host.length > 100 || path.includes('@')) return `registry key #${index + 1}`;
  const shown = path === '/v1/' || path === '/v2/' ? path : '';
  const more = authority !== host || !['', '/', shown].includes(path) ? ' (rest of the key not shown)' : '';
  return `registry ${host}${shown}${more}`;
}

/** Go's case folding of a member name, as far as it can make an ASCII name (K and ſ fold to k and s). */
function foldName(name: string): string {
  return name
    .toLowerCase()
    .replace(/\u017f/g, 's')
    .replace(/\u212a/g, 'k');
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
