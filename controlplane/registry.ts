/**
 * A private OCI registry for the local node: the CNCF distribution registry (Debian's
 * `docker-registry`) with TLS and htpasswd (bcrypt) password authentication, and the images the
 * node needs, built with crane from busybox without a Docker engine.
 *
 * Guarantees:
 * - It listens on 127.0.0.1 and on the node's bridge address, on one free port; `host` (loopback)
 *   is what image references and pull Secrets name. Its certificate is signed by the control
 *   plane's CA, which containerd trusts through `certs.d/<host>/hosts.toml`; containerd itself
 *   holds no credentials.
 * - `setUser` creates a user or changes its password, effective when it returns (a test rotates a
 *   credential at the registry).
 * - `publicHost` (loopback, another port) serves the same storage to anyone, read-only, as a public
 *   image registry does: what a Deployment without a pull Secret (regcred's own) pulls from.
 * - `pulls()` reads which user fetched which manifest from the registry's pull log. Registry 2.8
 *   names the user only in its error lines, so the log is made of its notifications: it posts an
 *   event (with the authenticated user as `actor.name`) for every manifest it serves, to a listener
 *   on 127.0.0.1 that appends each as one JSON line to `pulls.log`.
 */
import { execFile } from 'node:child_process';
import { appendFile, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { NodeBinaries } from './nodebinaries.ts';
import { Component, output } from './process.ts';

const run = promisify(execFile);

export interface Pull {
  user: string;
  repository: string;
  reference: string;
  time: string;
}

interface RegistryEvent {
  action?: string;
  timestamp?: string;
  target?: { mediaType?: string; repository?: string; tag?: string; digest?: string };
  request?: { method?: string };
  actor?: { name?: string };
}

const MANIFEST_TYPES = /manifest|image\.index|manifest\.list/;

/** Parses the pull log (one registry event per line) into manifest fetches; pure, for tests. */
export function parsePulls(log: string): Pull[] {
  const pulls: Pull[] = [];
  for (const line of log.split('\n')) {
    let event: RegistryEvent;
    try {
      event = JSON.parse(line);
    } catch {
      continue;
    }
    if (event.action !== 'pull' || !MANIFEST_TYPES.test(event.target?.mediaType ?? '')) continue;
    pulls.push({
      user: event.actor?.name ?? '',
      repository: event.target?.repository ?? '',
      reference: event.target?.tag || event.target?.digest || '',
      time: event.timestamp ?? '',
    });
  }
  return pulls;
}

/** The registry's configuration; pure, for tests. */
export function registryConfig(o: {
  addr: string;
  dataDir: string;
  certPath: string;
  keyPath: string;
  htpasswdPath: string;
  eventsUrl: string;
  /** No authentication, and read-only: the public listener. */
  anonymous?: boolean;
}): string {
  return JSON.stringify(
    {
      version: 0.1,
      log: { level: 'info', formatter: 'json', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: o.dataDir },
        delete: { enabled: !o.anonymous },
        ...(o.anonymous ? { maintenance: { readonly: { enabled: true } } } : {}),
      },
      http: { addr: o.addr, tls: { certificate: o.certPath, key: o.keyPath } },
      ...(o.anonymous ? {} : { auth: { htpasswd: { realm: 'regcred-local', path: o.htpasswdPath } } }),
      notifications: {
        endpoints: [{ name: 'pull-log', url: o.eventsUrl, timeout: '2s', threshold: 1, backoff: '200ms' }],
      },
    },
    null,
    2,
  );
}

export class Registry {
  /** The loopback listener (`127.0.0.1:<port>`): what image references and pull Secrets name. */
  readonly host: string;
  /** The same registry on the node's bridge address, reachable from Pods. */
  readonly bridgeHost: string;
  /** The same storage on loopback, read-only and without authentication. */
  readonly publicHost: string;
  readonly dir: string;
  private readonly components: Component[];
  private readonly binaries: NodeBinaries;
  private readonly users = new Map<string, string>();
  private readonly htpasswdPath: string;
  private readonly caPath: string;
  private readonly events: Server;
  private readonly timeoutMs: number;

  private constructor(init: {
    hosts: [string, string, string];
    dir: string;
    components: Component[];
    binaries: NodeBinaries;
    caPath: string;
    events: Server;
    timeoutMs: number;
  }) {
    this.events = init.events;
    [this.host, this.bridgeHost, this.publicHost] = init.hosts;
    this.dir = init.dir;
    this.components = init.components;
    this.binaries = init.binaries;
    this.caPath = init.caPath;
    this.timeoutMs = init.timeoutMs;
    this.htpasswdPath = join(init.dir, 'htpasswd');
  }

  get logPaths(): string[] {
    return this.components.map((c) => c.logPath);
  }

  get pids(): number[] {
    return this.components.flatMap((c) => (c.pid ? [c.pid] : []));
  }

  /** Every listener: the private ones on loopback and the bridge, and the public one. */
  get hosts(): string[] {
    return [this.host, this.bridgeHost, this.publicHost];
  }

  /**
   * Starts one registry process per address (distribution listens on one address each), sharing
   * storage, passwords and the pull log; the third, public one is anonymous and read-only.
   */
  static async start(o: {
    dir: string;
    logsDir: string;
    port: number;
    publicPort: number;
    bridgeAddress: string;
    binaries: NodeBinaries;
    caPath: string;
    certPath: string;
    keyPath: string;
    timeoutMs: number;
  }): Promise<Registry> {
    await mkdir(join(o.dir, 'data'), { recursive: true });
    const hosts: [string, string, string] = [
      `127.0.0.1:${o.port}`,
      `${o.bridgeAddress}:${o.port}`,
      `127.0.0.1:${o.publicPort}`,
    ];
    const events = await pullLogListener(join(o.dir, 'pulls.log'));
    const components: Component[] = [];
    for (const [i, addr] of hosts.entries()) {
      const configPath = join(o.dir, `config-${i}.yml`);
      await writeFile(
        configPath,
        registryConfig({
          addr,
          dataDir: join(o.dir, 'data'),
          certPath: o.certPath,
          keyPath: o.keyPath,
          htpasswdPath: join(o.dir, 'htpasswd'),
          eventsUrl: `http://127.0.0.1:${(events.address() as AddressInfo).port}/events`,
          anonymous: i === 2,
        }),
      );
      const name = ['registry', 'registry-bridge', 'registry-public'][i]!;
      components.push(
        new Component(name, o.binaries.registry, ['serve', configPath], join(o.logsDir, `${name}.log`)),
      );
    }
    const registry = new Registry({
      hosts,
      dir: o.dir,
      components,
      binaries: o.binaries,
      caPath: o.caPath,
      events,
      timeoutMs: o.timeoutMs,
    });
    await registry.setUser('regcred-images', randomPassword());
    await registry.startAll();
    return registry;
  }

  private async startAll(): Promise<void> {
    for (const c of this.components) c.start();
    for (const [i, c] of this.components.entries()) {
      const host = this.hosts[i]!;
      const expected = host === this.publicHost ? 200 : 401;
      await c.waitUntil(
        `https://${host}/v2/ answers ${expected}`,
        async () => (await this.anonymousStatus(host, '/v2/')) === expected,
        this.timeoutMs,
      );
    }
  }

  async stop(): Promise<void> {
    for (const c of this.components) await c.stop();
    await new Promise((r) => this.events.close(r));
  }

  /**
   * Creates `user` or changes its password. The registry reads its password file only when it
   * starts, so a running registry is restarted (in well under a second; storage is kept).
   */
  async setUser(user: string, password: string): Promise<void> {
    this.users.set(user, password);
    await this.writePasswords();
  }

  async removeUser(user: string): Promise<void> {
    this.users.delete(user);
    await this.writePasswords();
  }

  private async writePasswords(): Promise<void> {
    const lines: string[] = [];
    for (const [u, p] of this.users) lines.push((await output(this.binaries.htpasswd, [u], p)).trim());
    await writeFile(this.htpasswdPath, `${lines.join('\n')}\n`, { mode: 0o600 });
    if (this.pids.length > 0) {
      for (const c of this.components) await c.stop();
      await this.startAll();
    }
  }

  /** Manifest fetches recorded in the pull log so far (the registry posts them within moments). */
  async pulls(): Promise<Pull[]> {
    return parsePulls(await readFile(join(this.dir, 'pulls.log'), 'utf8').catch(() => ''));
  }

  /** A `kubernetes.io/dockerconfigjson` document for `user`. */
  dockerConfigJson(user: string, password: string): string {
    const auth = Buffer.from(`${user}:${password}`).toString('base64');
    return JSON.stringify({ auths: { [this.host]: { username: user, password, auth } } });
  }

  /** The HTTP status of an anonymous GET, for readiness. */
  private async anonymousStatus(host: string, path: string): Promise<number> {
    const { request } = await import('node:https');
    const ca = await readFile(this.caPath, 'utf8');
    return new Promise((resolve, reject) => {
      const req = request(`https://${host}${path}`, { ca, timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  /**
   * Builds an image from one folder as a single layer with crane and pushes it as `ref`
   * (`<repository>:<tag>` on this registry), for linux/amd64 with `entrypoint`.
   */
  async pushImage(o: {
    repository: string;
    tag: string;
    rootfs: string;
    entrypoint: string[];
  }): Promise<string> {
    const ref = `${this.host}/${o.repository}:${o.tag}`;
    const work = join(this.dir, 'build', `${o.repository.replaceAll('/', '_')}-${o.tag}`);
    await mkdir(work, { recursive: true });
    const layer = join(work, 'layer.tar');
    await run('tar', ['-C', o.rootfs, '-cf', layer, '.']);
    const env = await this.craneEnv(work);
    await run(this.binaries.crane, ['append', '--oci-empty-base', '-f', layer, '-t', `${ref}-base`], { env });
    await run(
      this.binaries.crane,
      [
        'mutate',
        '--set-platform',
        'linux/amd64',
        '--entrypoint',
        o.entrypoint.join(','),
        '-t',
        ref,
        `${ref}-base`,
      ],
      { env },
    );
    return ref;
  }

  /** Saves `ref` as a tarball that `ctr images import` reads. */
  async saveImage(ref: string, path: string): Promise<void> {
    const env = await this.craneEnv(join(this.dir, 'build'));
    await run(this.binaries.crane, ['pull', '--format', 'tarball', ref, path], { env });
  }

  /** crane's environment: this registry's CA, and a private docker config with the image user. */
  private async craneEnv(work: string): Promise<NodeJS.ProcessEnv> {
    const dockerConfig = join(work, 'docker');
    await mkdir(dockerConfig, { recursive: true });
    const password = this.users.get('regcred-images') ?? '';
    await writeFile(join(dockerConfig, 'config.json'), this.dockerConfigJson('regcred-images', password));
    await chmod(join(dockerConfig, 'config.json'), 0o600);
    return { ...process.env, DOCKER_CONFIG: dockerConfig, SSL_CERT_FILE: this.caPath, HOME: work };
  }
}

/** Receives the registry's notifications and appends each event to `path` as one JSON line. */
async function pullLogListener(path: string): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let lines = '';
      try {
        const envelope = JSON.parse(Buffer.concat(chunks).toString()) as { events?: unknown[] };
        for (const e of envelope.events ?? []) lines += `${JSON.stringify(e)}\n`;
      } catch {
        // Not an envelope: nothing to record.
      }
      void appendFile(path, lines).finally(() => res.end());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref();
  return server;
}

function randomPassword(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString('base64url');
}
