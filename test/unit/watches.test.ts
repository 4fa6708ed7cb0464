/**
 * What each watched event enqueues: the pure mappings in src/regcred/watches.ts. And the rule that
 * keeps the runtime generic: nothing in src/runtime/ knows about regcred.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type { RegistryCredential } from '../../src/api/v1alpha1.ts';
import { keyCodec } from '../../src/regcred/keys.ts';
import {
  FINALIZER,
  type Namespace,
  PULL_SECRETS_ANNOTATION,
  type Secret,
  type ServiceAccount,
} from '../../src/regcred/objects.ts';
import { compileSelection } from '../../src/regcred/plan.ts';
import {
  copyKeys,
  createCaches,
  credentialKeys,
  namespaceKeys,
  serviceAccountKeys,
  sourceKeys,
  type View,
} from '../../src/regcred/watches.ts';
import type { Enqueue } from '../../src/runtime/reconcile.ts';

function credential(name: string, spec: Partial<RegistryCredential['spec']> = {}): RegistryCredential {
  return {
    apiVersion: 'regcred.dev/v1alpha1',
    kind: 'RegistryCredential',
    metadata: { name, uid: `uid-${name}`, resourceVersion: '1', generation: 1, finalizers: [FINALIZER] },
    spec: {
      source: { secretRef: { namespace: 'regcred-system', name: `src-${name}` } },
      namespaces: { names: ['a'] },
      ...spec,
    },
  };
}
const namespace = (name: string, labels?: Record<string, string>): Namespace => ({
  metadata: { name, uid: `ns-${name}`, resourceVersion: '1', labels },
});

function view(...credentials: RegistryCredential[]): View {
  const caches = createCaches();
  for (const rc of credentials) caches.credentials.writeThrough(rc, undefined);
  caches.namespaces.writeThrough(namespace('a'), undefined);
  caches.namespaces.writeThrough(namespace('b', { tenant: 'x' }), undefined);
  return { caches, selectionOf: compileSelection };
}

const encoded = (requests: Enqueue<ReturnType<typeof keyCodec.decode>>[]) =>
  requests.map((r) => `${keyCodec.encode(r.key)}${r.afterMs ? ` after ${r.afterMs}ms` : ''}`);

describe('watched events map to keys', () => {
  it('encodes keys as the strings the queue, logs and metrics carry, and decodes them back', () => {
    for (const text of ['credential:acme', 'status:acme', 'namespace:acme/team-a']) {
      expect(keyCodec.encode(keyCodec.decode(text))).to.equal(text);
    }
  });

  it('a new or deleted credential, or a spec or lifecycle change, runs its credential key; a status change only status', () => {
    const rc = credential('acme');
    expect(encoded(credentialKeys({ type: 'added', object: rc }))).to.deep.equal(['credential:acme']);
    expect(encoded(credentialKeys({ type: 'deleted', object: rc }))).to.deep.equal(['credential:acme']);
    const respec = { ...rc, metadata: { ...rc.metadata, generation: 2 } };
    expect(encoded(credentialKeys({ type: 'updated', object: respec, old: rc }))).to.deep.equal([
      'credential:acme',
    ]);
    const finalized = { ...rc, metadata: { ...rc.metadata, finalizers: [] } };
    expect(encoded(credentialKeys({ type: 'updated', object: finalized, old: rc }))).to.deep.equal([
      'credential:acme',
    ]);
    const statused = { ...rc, status: { observedGeneration: 1 } };
    expect(encoded(credentialKeys({ type: 'updated', object: statused, old: rc }))).to.deep.equal([
      'status:acme after 1000ms',
    ]);
  });

  it('a namespace runs the pairs of credentials that select it or hold a copy there, and their status', () => {
    const v = view(
      credential('named'),
      credential('labelled', { namespaces: { selector: { matchLabels: { tenant: 'x' } } } }),
      credential('elsewhere', { namespaces: { names: ['z'] } }),
    );
    const copy: Secret = {
      metadata: {
        name: 'elsewhere',
        namespace: 'b',
        uid: 'c',
        resourceVersion: '2',
        labels: { 'regcred.dev/credential': 'elsewhere' },
      },
    };
    v.caches.copies.writeThrough(copy, undefined);
    expect(encoded(namespaceKeys(v, { type: 'added', object: namespace('a') }))).to.deep.equal([
      'namespace:named/a',
      'status:named after 1000ms',
    ]);
    expect(
      encoded(
        namespaceKeys(v, { type: 'updated', object: namespace('b', { tenant: 'x' }), old: namespace('b') }),
      ),
    ).to.deep.equal([
      'namespace:labelled/b',
      'status:labelled after 1000ms',
      'namespace:elsewhere/b',
      'status:elsewhere after 1000ms',
    ]);
  });

  it('a namespace that stops being selected runs the pair, so that what was recorded for it leaves status', () => {
    const v = view(credential('labelled', { namespaces: { selector: { matchLabels: { tenant: 'x' } } } }));
    // A conflict there left no copy to map it by: only the old labels tell.
    expect(
      encoded(
        namespaceKeys(v, { type: 'updated', object: namespace('c'), old: namespace('c', { tenant: 'x' }) }),
      ),
    ).to.deep.equal(['namespace:labelled/c', 'status:labelled after 1000ms']);
    expect(encoded(namespaceKeys(v, { type: 'added', object: namespace('c') }))).to.deep.equal([]);
  });

  it('a ServiceAccount runs the credentials selecting its namespace, or that recorded an entry on it before or after', () => {
    const v = view(credential('named'), credential('gone', { namespaces: { names: ['z'] } }));
    const sa = (added?: Record<string, string>): ServiceAccount => ({
      metadata: {
        name: 'default',
        namespace: 'b',
        uid: 'sa',
        resourceVersion: '3',
        annotations: added ? { [PULL_SECRETS_ANNOTATION]: JSON.stringify(added) } : undefined,
      },
    });
    expect(encoded(serviceAccountKeys(v, { type: 'added', object: sa() }))).to.deep.equal([]);
    expect(
      encoded(serviceAccountKeys(v, { type: 'updated', object: sa(), old: sa({ gone: 'gone' }) })),
    ).to.deep.equal(['namespace:gone/b']);
    const inA = { ...sa(), metadata: { ...sa().metadata, namespace: 'a' } };
    expect(encoded(serviceAccountKeys(v, { type: 'deleted', object: inA }))).to.deep.equal([
      'namespace:named/a',
    ]);
  });

  it('a copy runs the credential it is labelled for, or whose copy name it has; a source runs its credentials', () => {
    const v = view(credential('acme'), credential('other', { secretName: 'shared' }));
    const secret = (name: string, label?: string): Secret => ({
      metadata: {
        name,
        namespace: 'a',
        uid: 's',
        resourceVersion: '4',
        labels: label ? { 'regcred.dev/credential': label } : undefined,
      },
    });
    expect(encoded(copyKeys(v, { type: 'deleted', object: secret('x', 'acme') }))).to.deep.equal([
      'namespace:acme/a',
    ]);
    expect(encoded(copyKeys(v, { type: 'added', object: secret('shared') }))).to.deep.equal([
      'namespace:other/a',
    ]);
    const source: Secret = {
      metadata: { name: 'src-acme', namespace: 'regcred-system', uid: 'src', resourceVersion: '5' },
    };
    expect(encoded(sourceKeys(v, { type: 'updated', object: source, old: source }))).to.deep.equal([
      'credential:acme',
    ]);
  });
});

describe('the runtime', () => {
  it('knows nothing of regcred: no file in src/runtime imports the domain or names it', () => {
    const dir = join(import.meta.dirname, '..', '..', 'src', 'runtime');
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
    expect(files.length).to.be.greaterThan(10);
    for (const file of files) {
      const text = readFileSync(join(dir, file), 'utf8');
      expect(text, file).not.to.match(/from '\.\.\/(regcred|api)\//);
      expect(text, file).not.to.match(/regcred|RegistryCredential|imagePullSecret/i);
    }
  });
});
