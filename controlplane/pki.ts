/**
 * The control plane's certificates, made with the `openssl` 3 command line: one CA, a serving
 * certificate for kube-apiserver, client certificates for any user and groups, and a key pair for
 * ServiceAccount token signing. ECDSA P-256 keys (as envtest uses) keep generation to milliseconds.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ControlPlaneError } from './errors.ts';

const run = promisify(execFile);

export interface KeyPair {
  certPath: string;
  keyPath: string;
}

export interface Pem {
  cert: string;
  key: string;
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
const DAYS = ['-days', '3650'];

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new ControlPlaneError(
        'openssl is needed to make the local control plane certificates and is not on PATH',
      );
    }
    throw new ControlPlaneError(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** `O=` components must not inject further RDNs; the names here come from tests, still check. */
function subject(commonName: string, organizations: readonly string[] = []): string {
  const parts = [...organizations.map((o) => `O=${o}`), `CN=${commonName}`];
  for (const p of parts)
    if (/[/,+=\\]/.test(p.slice(p.indexOf('=') + 1))) throw new ControlPlaneError(`unsupported name ${p}`);
  return `/${parts.join('/')}`;
}

export async function createCertificateAuthority(dir: string): Promise<KeyPair> {
  const pair = { certPath: join(dir, 'ca.crt'), keyPath: join(dir, 'ca.key') };
  await openssl([
    'req',
    '-x509',
    ...EC_KEY,
    ...DAYS,
    '-subj',
    subject('regcred-local-ca'),
    '-keyout',
    pair.keyPath,
    '-out',
    pair.certPath,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return pair;
}

interface LeafOptions {
  name: string;
  commonName: string;
  organizations?: readonly string[];
  usage: 'serverAuth' | 'clientAuth';
  subjectAltNames?: readonly string[];
}

export async function issueCertificate(ca: KeyPair, dir: string, opts: LeafOptions): Promise<KeyPair> {
  const pair = { certPath: join(dir, `${opts.name}.crt`), keyPath: join(dir, `${opts.name}.key`) };
  const ext = [
    '-addext',
    'basicConstraints=critical,CA:FALSE',
    '-addext',
    'keyUsage=critical,digitalSignature',
    '-addext',
    `extendedKeyUsage=${opts.usage}`,
  ];
  if (opts.subjectAltNames?.length) ext.push('-addext', `subjectAltName=${opts.subjectAltNames.join(',')}`);
  await openssl([
    'req',
    '-x509',
    ...EC_KEY,
    ...DAYS,
    '-subj',
    subject(opts.commonName, opts.organizations),
    '-CA',
    ca.certPath,
    '-CAkey',
    ca.keyPath,
    '-keyout',
    pair.keyPath,
    '-out',
    pair.certPath,
    ...ext,
  ]);
  return pair;
}

/** A private key and its public half, for kube-apiserver to sign and verify ServiceAccount tokens. */
export async function createSigningKey(dir: string): Promise<{ privatePath: string; publicPath: string }> {
  const privatePath = join(dir, 'sa.key');
  const publicPath = join(dir, 'sa.pub');
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', privatePath]);
  await openssl(['pkey', '-in', privatePath, '-pubout', '-out', publicPath]);
  return { privatePath, publicPath };
}

export async function readPem(pair: KeyPair): Promise<Pem> {
  return { cert: await readFile(pair.certPath, 'utf8'), key: await readFile(pair.keyPath, 'utf8') };
}
