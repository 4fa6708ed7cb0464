/**
 * kubelet-creds, the test tool that reads pull Secrets with kubelet's own code, says what kubelet
 * would: the registries it decodes, the Secrets it ignores and the ones it fails on.
 */
import { expect } from 'chai';
import { kubeletCredsBinary, kubeletReads } from '../support/kubelet.ts';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const dockerConfigJson = (json: string) => ({
  type: 'kubernetes.io/dockerconfigjson',
  data: { '.dockerconfigjson': b64(json) },
});

describe('kubelet-creds, kubelet reading a pull Secret', () => {
  before(async function () {
    this.timeout(15 * 60_000); // builds it the first time, or after its sources changed
    await kubeletCredsBinary();
  });

  it('answers a batch in order: decoded auth, merged duplicates, kubelet errors, ignored Secrets', async () => {
    const readings = await kubeletReads([
      dockerConfigJson(`{"auths":{"registry.example":{"auth":"${b64('robot:pa:ss')}","email":"r@example"}}}`),
      dockerConfigJson('{"auths":{"a.example":{"username":"u"}},"auths":{"b.example":{"password":"p"}}}'),
      dockerConfigJson('{"auths":{"registry.example":{"auth":"not base64!"}}}'),
      { type: 'Opaque', data: { '.dockerconfigjson': b64('{"auths":{}}') } },
      {
        type: 'kubernetes.io/dockercfg',
        data: { '.dockercfg': b64(`{"old.example":{"auth":"${b64('u:p')}"}}`) },
      },
      { type: 'kubernetes.io/dockerconfigjson' },
    ]);
    expect(readings).to.deep.equal([
      {
        verdict: 'ok',
        registries: { 'registry.example': { username: 'robot', password: 'pa:ss', email: 'r@example' } },
      },
      {
        verdict: 'ok',
        registries: {
          'a.example': { username: 'u', password: '', email: '' },
          'b.example': { username: '', password: 'p', email: '' },
        },
      },
      { verdict: 'error', error: 'illegal base64 data at input byte 3' },
      { verdict: 'ignored' },
      { verdict: 'ok', registries: { 'old.example': { username: 'u', password: 'p', email: '' } } },
      { verdict: 'ignored' },
    ]);
  });

  it('gives the exact bytes of a password that is not UTF-8', async () => {
    const auth = Buffer.from('u:\xff', 'latin1').toString('base64');
    const [reading] = await kubeletReads([dockerConfigJson(`{"auths":{"r.example":{"auth":"${auth}"}}}`)]);
    expect(reading).to.deep.equal({
      verdict: 'ok',
      registries: { 'r.example': { username: 'u', password: '\ufffd', email: '', passwordBase64: '/w==' } },
    });
  });

  it('refuses an input that is no Secret at all, rather than guessing', async () => {
    let failure: Error | undefined;
    await kubeletReads([{ type: 'Opaque', data: { x: '%%%' } }]).catch((err: Error) => {
      failure = err;
    });
    expect(failure?.message).to.contain('rejected input 0');
  });
});
