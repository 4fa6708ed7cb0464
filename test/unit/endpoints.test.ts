/**
 * Pieces of the HTTP endpoints that need no cluster: bind addresses and the self-signed
 * certificate of the secure metrics endpoint.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { expect } from 'chai';
import { parseBindAddress } from '../../src/runtime/http.ts';
import { selfSignedCertificate } from '../../src/runtime/selfsigned.ts';

describe('bind addresses', () => {
  it('reads them as Go does: :port for all interfaces, host:port, [ipv6]:port, and 0 for off', () => {
    expect(parseBindAddress(':8081')).to.deep.equal({ host: '0.0.0.0', port: 8081 });
    expect(parseBindAddress('127.0.0.1:0')).to.deep.equal({ host: '127.0.0.1', port: 0 });
    expect(parseBindAddress('[::1]:9090')).to.deep.equal({ host: '::1', port: 9090 });
    expect(parseBindAddress('0')).to.equal(undefined);
    expect(() => parseBindAddress('8081')).to.throw(/invalid bind address/);
  });
});

describe('the self-signed metrics certificate', () => {
  it('is a valid serving certificate for its names, signed by its own key', () => {
    const { cert, key } = selfSignedCertificate(
      'regcred-metrics',
      ['localhost', 'regcred-metrics.regcred-system.svc'],
      ['127.0.0.1'],
    );
    const x = new X509Certificate(cert);
    expect(x.subject).to.equal('CN=regcred-metrics');
    expect(x.subjectAltName).to.equal(
      'DNS:localhost, DNS:regcred-metrics.regcred-system.svc, IP Address:127.0.0.1',
    );
    expect(x.ca).to.equal(false);
    expect(x.verify(x.publicKey)).to.equal(true);
    expect(x.checkPrivateKey(createPrivateKey(key))).to.equal(true);
    expect(x.checkHost('localhost')).to.equal('localhost');
    expect(x.keyUsage).to.deep.equal(['1.3.6.1.5.5.7.3.1']);
    expect(Date.parse(x.validTo) - Date.now()).to.be.greaterThan(300 * 86_400_000);
  });
});
