/**
 * The pure parts of building and serving the image: `npm run image`'s command line, buildah's
 * explicit configuration, and the registry's public (anonymous, read-only) listener.
 */
import { expect } from 'chai';
import {
  BASE_PACKAGES,
  BUILDER_PACKAGES,
  buildahConfig,
  LOCAL_BASE,
  parseSize,
} from '../../controlplane/image.ts';
import { registryConfig } from '../../controlplane/registry.ts';
import { parseImageArgs } from '../../hack/image.ts';

describe('npm run image', () => {
  it('defaults to the version tag, pulling the real base, pushing nowhere', () => {
    expect(parseImageArgs([], '0.1.0')).to.deep.equal({ tag: '0.1.0', localBase: false, help: false });
  });

  it('takes --flag value and --flag=value alike, and drops a trailing slash of the registry', () => {
    expect(
      parseImageArgs(
        ['--push', 'ghcr.io/acme/', '--tag=1.2.3', '--local-base', '--cert-dir', '/ca'],
        '0.1.0',
      ),
    ).to.deep.equal({ push: 'ghcr.io/acme', tag: '1.2.3', localBase: true, certDir: '/ca', help: false });
  });

  it('refuses unknown options and a flag without its value', () => {
    expect(() => parseImageArgs(['--pull'], 'v')).to.throw(/unknown option --pull/);
    expect(() => parseImageArgs(['--push'], 'v')).to.throw(/--push needs a value/);
    expect(() => parseImageArgs(['--push', '--tag', 'x'], 'v')).to.throw(/--push needs a value/);
    expect(() => parseImageArgs(['--local-base=yes'], 'v')).to.throw(/unknown option/);
  });
});

describe("buildah's configuration", () => {
  const config = buildahConfig('/cache/image');

  it('accepts unsigned images, resolves short names to docker.io, and keeps storage in the cache with overlay', () => {
    expect(JSON.parse(config['policy.json']!)).to.deep.equal({
      default: [{ type: 'insecureAcceptAnything' }],
    });
    expect(config['registries.conf']).to.contain('unqualified-search-registries = ["docker.io"]');
    expect(config['storage.conf']).to.contain('driver = "overlay"');
    expect(config['storage.conf']).to.contain('graphroot = "/cache/image/storage"');
  });

  it('pins every Debian package and names the base by its full name', () => {
    for (const version of [...Object.values(BUILDER_PACKAGES), ...Object.values(BASE_PACKAGES)])
      expect(version).to.match(/^[\w.:~+-]+$/);
    expect(Object.keys(BUILDER_PACKAGES)).to.include('buildah');
    expect(LOCAL_BASE).to.equal('docker.io/library/node:24-bookworm-slim');
  });

  it("reads buildah's sizes in decimal units", () => {
    expect(parseSize('248 MB')).to.equal(248e6);
    expect(parseSize('1.5 GB')).to.equal(1.5e9);
    expect(parseSize('512 B')).to.equal(512);
    expect(parseSize('a lot')).to.be.NaN;
  });
});

describe("the registry's public listener", () => {
  const base = {
    addr: '127.0.0.1:5001',
    dataDir: '/d',
    certPath: '/c',
    keyPath: '/k',
    htpasswdPath: '/h',
    eventsUrl: 'http://127.0.0.1:9/events',
  };

  it('serves the same storage without authentication, read-only', () => {
    const config = JSON.parse(registryConfig({ ...base, anonymous: true }));
    expect(config.auth).to.equal(undefined);
    expect(config.storage.filesystem).to.deep.equal({ rootdirectory: '/d' });
    expect(config.storage.maintenance).to.deep.equal({ readonly: { enabled: true } });
    expect(config.storage.delete).to.deep.equal({ enabled: false });
    expect(config.http.tls).to.deep.equal({ certificate: '/c', key: '/k' });
  });

  it('leaves the private listeners writable and password-protected', () => {
    const config = JSON.parse(registryConfig(base));
    expect(config.auth).to.deep.equal({ htpasswd: { realm: 'regcred-local', path: '/h' } });
    expect(config.storage.maintenance).to.equal(undefined);
  });
});
