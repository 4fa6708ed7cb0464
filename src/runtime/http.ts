/**
 * The operator's HTTP endpoints, with controller-runtime's flags and behaviour.
 *
 * - Health probes (`--health-probe-bind-address`, default `:8081`): `/healthz` answers 200 while the
 *   process serves; `/readyz` 200 once the caches have synced (leader or follower), 503 before.
 * - Metrics (`--metrics-bind-address`, default `0` = off): Prometheus text on `/metrics`. Plain HTTP,
 *   or with `--metrics-secure` HTTPS (a given certificate, else a self-signed one) where a scrape is
 *   let in only after a TokenReview of its bearer token and a SubjectAccessReview for `get` on the
 *   non-resource URL `/metrics`. Review answers are cached for 10 s per token.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { classify } from './errors.ts';
import type { KubeClient } from './kube.ts';
import type { Logger } from './logger.ts';
import { selfSignedCertificate } from './selfsigned.ts';

/** Parses Go-style bind addresses: `:8081` (all interfaces), `127.0.0.1:0`, `[::1]:9`; `0` means off. */
export function parseBindAddress(address: string): { host: string; port: number } | undefined {
  if (address === '0' || address === '') return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (!m) throw new Error(`invalid bind address "${address}" (use host:port, :port, or 0 to disable)`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}

async function listen(server: Server, address: { host: string; port: number }): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  return `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
}

function reply(res: ServerResponse, code: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(code, { 'Content-Type': type });
  res.end(body);
}

export interface Probes {
  ready(): boolean;
}

/** Starts the health probe server; resolves with its bound address. */
export async function serveProbes(
  bind: string,
  probes: Probes,
): Promise<{ server: Server; address: string } | undefined> {
  const address = parseBindAddress(bind);
  if (!address) return undefined;
  const server = createHttpServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return reply(res, 200, 'ok');
    if (path === '/readyz')
      return probes.ready() ? reply(res, 200, 'ok') : reply(res, 503, 'caches not synced');
    reply(res, 404, 'not found');
  });
  return { server, address: await listen(server, address) };
}

export interface MetricsServerOptions {
  registry: Registry;
  secure: boolean;
  /** A directory holding tls.crt and tls.key; without it a self-signed certificate is made. */
  certDir?: string;
  /** Common name of the self-signed certificate made when there is no `certDir`. */
  certName: string;
  /** For the TokenReview and SubjectAccessReview of a secure scrape. */
  client: KubeClient;
  logger: Logger;
}

/** Starts the metrics server; resolves with its bound address. */
export async function serveMetrics(
  bind: string,
  options: MetricsServerOptions,
): Promise<{ server: Server; address: string } | undefined> {
  const address = parseBindAddress(bind);
  if (!address) return undefined;
  const authorize = options.secure ? reviewer(options.client, options.logger) : undefined;
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') return reply(res, 404, 'not found');
    if (authorize) {
      const verdict = await authorize(req.headers.authorization);
      if (verdict !== 200) return reply(res, verdict, verdict === 401 ? 'Unauthorized' : 'Forbidden');
    }
    reply(res, 200, await options.registry.metrics(), options.registry.contentType);
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handler(req, res).catch((err: unknown) => {
      options.logger.warn('metrics request failed', { error: String(err) });
      if (!res.headersSent) reply(res, 500, 'error');
    });
  };
  let server: Server;
  if (options.secure) {
    const tls = options.certDir
      ? {
          cert: readFileSync(join(options.certDir, 'tls.crt')),
          key: readFileSync(join(options.certDir, 'tls.key')),
        }
      : selfSignedCertificate(options.certName, ['localhost'], ['127.0.0.1']);
    server = createHttpsServer(tls, onRequest) as unknown as Server;
  } else {
    server = createHttpServer(onRequest);
  }
  return { server, address: await listen(server, address) };
}

/** TokenReview, then SubjectAccessReview for GET /metrics; answers 200, 401 or 403. */
function reviewer(client: KubeClient, logger: Logger) {
  const cache = new Map<string, { verdict: 200 | 401 | 403; until: number }>();
  return async (authorization: string | undefined): Promise<200 | 401 | 403> => {
    const token = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
    if (!token) return 401;
    const key = createHash('sha256').update(token).digest('hex');
    const hit = cache.get(key);
    if (hit && hit.until > Date.now()) return hit.verdict;
    let verdict: 200 | 401 | 403;
    try {
      // Reviews change nothing in the cluster: they pass the leader's write fence, so that a
      // follower (whose fence is always closed) answers its scrapes too.
      const review = await client.request<{
        status?: {
          authenticated?: boolean;
          user?: { username?: string; uid?: string; groups?: string[]; extra?: unknown };
        };
      }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
        unfenced: true,
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
      });
      const user = review.status?.user;
      if (!review.status?.authenticated || !user) {
        verdict = 401;
      } else {
        const access = await client.request<{ status?: { allowed?: boolean } }>(
          'POST',
          '/apis/authorization.k8s.io/v1/subjectaccessreviews',
          {
            unfenced: true,
            body: {
              apiVersion: 'authorization.k8s.io/v1',
              kind: 'SubjectAccessReview',
              spec: {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                nonResourceAttributes: { path: '/metrics', verb: 'get' },
              },
            },
          },
        );
        verdict = access.status?.allowed ? 200 : 403;
      }
    } catch (err) {
      logger.warn('could not review a metrics scrape', { error: classify(err).message });
      return 403;
    }
    if (cache.size > 1000) cache.clear();
    cache.set(key, { verdict, until: Date.now() + 10_000 });
    return verdict;
  };
}
