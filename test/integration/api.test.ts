/**
 * The RegistryCredential API as the API server serves it: the schema and the TypeScript types
 * agree, defaults are applied, and kubectl teaches and shows it.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, relative } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { CRD_FILE, CRD_FILES, renderCrd } from '../../hack/generate.ts';
import type { RegistryCredentialSpec, RegistryCredentialStatus } from '../../src/api/v1alpha1.ts';
import { cluster } from '../support/cluster.ts';
import {
  admin,
  createCredential,
  deleteCredential,
  getCredential,
  installRegcred,
  RC_PATH,
  SOURCE_NAMESPACE,
  unique,
} from '../support/world.ts';

const run = promisify(execFile);

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run(cluster().binaries.kubectl, ['--kubeconfig', cluster().admin.path, ...args]);
  return stdout;
}

describe('the RegistryCredential API', function () {
  this.timeout(60_000);
  before(installRegcred);

  it('is in crds/, config/crd/ and the Helm chart exactly as the schema in src/api generates it', () => {
    expect(CRD_FILES).to.have.length(3);
    for (const file of CRD_FILES) {
      const name = relative(process.cwd(), file);
      expect(readFileSync(file, 'utf8')).to.equal(renderCrd(), `${name} is stale: run npm run generate`);
    }
    // `kubectl apply -f crds/` and Helm take every file there as a manifest: nothing else belongs.
    expect(readdirSync(dirname(CRD_FILE))).to.deep.equal([basename(CRD_FILE)]);
  });

  it('keeps every field of the TypeScript types through the API server (nothing pruned)', async () => {
    const name = unique('full');
    // Typed with the types derived from the schema: every field the types know, set.
    const spec: Required<RegistryCredentialSpec> = {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: 'src' } },
      secretName: 'pull-secret',
      namespaces: {
        names: ['a', 'b'],
        selector: {
          matchLabels: { tenant: 'acme', 'example.com/tier': 'gold' },
          matchExpressions: [
            { key: 'env', operator: 'In', values: ['prod', 'stage'] },
            { key: 'legacy', operator: 'DoesNotExist' },
          ],
        },
        exclude: ['kube-*', 'x?'],
      },
      serviceAccounts: { names: ['default', '*'], selector: { matchLabels: { pulls: 'private' } } },
      conflictPolicy: 'Adopt',
      suspend: true,
    };
    const status: Required<RegistryCredentialStatus> = {
      observedGeneration: 1,
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          observedGeneration: 1,
          lastTransitionTime: '2026-01-02T03:04:05Z',
          reason: 'Suspended',
          message: 'm',
        },
      ],
      source: `${SOURCE_NAMESPACE}/src`,
      secretName: 'pull-secret',
      synced: '1/2',
      namespaces: { selected: 2, synced: 1, failed: 1, conflicting: 0 },
      serviceAccounts: { patched: 3 },
      failures: [{ namespace: 'b', reason: 'Forbidden', message: 'denied' }],
      sourceResourceVersion: '42',
      lastRotationTime: '2026-01-02T03:04:06Z',
      failingSince: '2026-01-02T03:04:07Z',
    };
    await createCredential(name, spec);
    await admin().mergePatch(`${RC_PATH}/${name}/status`, { status });
    const read = await getCredential(name);
    expect(read.spec).to.deep.equal(spec);
    expect(read.status).to.deep.equal(status);
    await deleteCredential(name);
  });

  it('fills in the defaults: ServiceAccount default, conflictPolicy Skip, not suspended', async () => {
    const name = unique('defaults');
    const created = await createCredential(name, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: 'src' } },
      namespaces: { names: ['a'] },
    });
    expect(created.spec.serviceAccounts).to.deep.equal({ names: ['default'] });
    expect(created.spec.conflictPolicy).to.equal('Skip');
    expect(created.spec.suspend).to.equal(false);
    await deleteCredential(name);
  });

  it('is shown by kubectl get with its short name and columns', async () => {
    const name = unique('columns');
    await createCredential(name, {
      source: { secretRef: { namespace: SOURCE_NAMESPACE, name: 'src' } },
      namespaces: { names: ['a'] },
    });
    await admin().mergePatch(`${RC_PATH}/${name}/status`, {
      status: {
        source: `${SOURCE_NAMESPACE}/src`,
        secretName: name,
        synced: '998/1000',
        conditions: [
          {
            type: 'Ready',
            status: 'False',
            lastTransitionTime: '2026-01-02T03:04:05Z',
            reason: 'Conflicts',
            message: 'm',
          },
        ],
      },
    });
    const out = await kubectl('get', 'regcred', name);
    const [header, row] = out.trim().split('\n');
    expect(header!.split(/\s+/)).to.deep.equal([
      'NAME',
      'SOURCE',
      'SECRET',
      'SYNCED',
      'READY',
      'REASON',
      'AGE',
    ]);
    expect(row!.split(/\s+/).slice(0, 6)).to.deep.equal([
      name,
      `${SOURCE_NAMESPACE}/src`,
      name,
      '998/1000',
      'False',
      'Conflicts',
    ]);
    await deleteCredential(name);
  });

  it('is explained field by field by kubectl explain', async () => {
    const out = await kubectl('explain', 'registrycredential.spec.conflictPolicy');
    expect(out).to.contain('Skip (default)');
    expect(out).to.match(/ENUM:\s+Skip\s+Adopt/);
    const recursive = await kubectl('explain', 'registrycredential', '--recursive');
    expect(recursive).to.contain('serviceAccounts');
    // Every field has a description: kubectl prints <empty> for a field without one.
    for (const path of [
      'spec',
      'spec.source.secretRef',
      'spec.namespaces',
      'spec.serviceAccounts.selector',
      'status',
    ]) {
      expect(await kubectl('explain', `registrycredential.${path}`)).not.to.contain('<empty>');
    }
  });
});
