/**
 * A thin JSON client for the Kubernetes API on top of client-node's `KubeConfig` (authentication,
 * TLS, proxies) and undici, the HTTP stack client-node itself uses.
 *
 * Why not the generated API classes: they turn timestamps into `Date`s and objects into model
 * classes that must never be sent back (client-node #655), and they hide the Content-Type needed
 * for merge patches. Here objects stay plain JSON, exactly as the API server sends them.
 *
 * Errors: every non-2xx answer is an `ApiError` carrying the HTTP code and the decoded `Status`;
 * network failures surface as they are. `classify` (errors.ts) decides what each one means.
 *
 * Connections: one pool for every request (HTTP/2 when the server offers it, so one connection).
 * Each HTTP/2 connection is health-checked with a PING every PING_INTERVAL_MS, as client-go's
 * are: one that leaves a PING unanswered until the next is replaced, and the requests on it fail
 * (their callers retry). A request that times out closes the pool's connections too, so the
 * requests queued behind it move to a new connection at once instead of each timing out in turn;
 * a watch that goes silent past its inactivity limit ends only itself.
 */
import { type Cluster, HttpMethod, type KubeConfig, RequestContext } from '@kubernetes/client-node';
import { Agent, type Dispatcher, request } from 'undici';

/** A Kubernetes `Status`, as far as this client reads it. */
export interface Status {
  kind?: string;
  code?: number;
  reason?: string;
  message?: string;
  details?: { name?: string; kind?: string; causes?: { type?: string; message?: string; field?: string }[] };
}

export class ApiError extends Error {
  override name = 'ApiError';
  readonly code: number;
  readonly status: Status;
  readonly method: string;
  readonly path: string;

  constructor(method: string, path: string, code: number, status: Status) {
    super(`${method} ${path}: ${code} ${status.reason ?? ''} ${status.message ?? ''}`.trim());
    this.code = code;
    this.status = status;
    this.method = method;
    this.path = path;
  }
}

/** How long credential headers are reused before client-node is asked again (token files rotate). */
const CREDENTIALS_TTL_MS = 10_000;

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Defaults to `application/json`; merge patches use `application/merge-patch+json`. */
  contentType?: string;
  /** Gives up (rejects) after this long without a complete answer; default REQUEST_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Aborts the request. */
  signal?: AbortSignal;
  /** Sent even when the client's `fence` is closed (the leader elector's own Lease writes). */
  unfenced?: boolean;
}

/** A write the client refused to send because its fence was closed (e.g. leadership lapsed). */
export class FencedError extends Error {
  constructor(method: string, path: string, reason: string) {
    super(`${method} ${path} not sent: ${reason}`);
    this.name = 'FencedError';
  }
}

/** No request waits longer than this for its answer unless told otherwise (watches excepted). */
const REQUEST_TIMEOUT_MS = 30_000;
/**
 * A connection whose PING is still unanswered when the next is due is dead: it is replaced 5–10 s
 * after it stopped answering. Needed because a connection can die without Node noticing: in the
 * fault scenario "every connection cut" (measured, 7 runs of 14), a TLS socket whose peer had reset
 * it stayed open, reading and writing into nothing (the kernel had already dropped the
 * connection), and its requests waited out their 30 s timeout. client-go pings after 30 s without
 * a frame and waits 15 s for the answer; undici pings on a fixed interval (its default is 60 s)
 * whether or not frames arrive, so the interval also bounds how late an answer may come on a
 * busy connection (an answer to a PING goes out ahead of queued data, but behind what the kernel
 * already holds: well under a second for a full socket buffer at 100 Mbit/s).
 */
export const PING_INTERVAL_MS = 5_000;
/** undici's codes for a request that timed out waiting for its answer's headers or body. */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Records each request for metrics; the runtime counts requests by verb and code. */
export type RequestObserver = (method: string, path: string, code: number, seconds: number) => void;

export class KubeClient {
  readonly config: KubeConfig;
  readonly server: string;
  private readonly observers: RequestObserver[] = [];
  /**
   * Credentials and one HTTP dispatcher (connection pool) for every request, refreshed every
   * CREDENTIALS_TTL_MS. client-node 2.0.1 builds a new undici Agent in each
   * applySecurityAuthentication call; using a new one per request opens (and keeps alive) a TLS
   * connection per request: measured, 4,000 writes then cost 500 MiB of RSS.
   */
  private credentials:
    | { headers: Record<string, string>; dispatcher: ReturnType<RequestContext['getDispatcher']>; at: number }
    | undefined;

  constructor(config: KubeConfig) {
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.config = config;
    this.server = cluster.server.replace(/\/+$/, '');
    withConnectionHealthCheck(config);
  }

  onRequest(observer: RequestObserver): void {
    this.observers.push(observer);
  }

  /**
   * Asked synchronously before every request other than a GET is sent: a reason not to send it,
   * or undefined to send it. A leader sets it so that a process that was paused past its renew
   * deadline (SIGSTOP, a VM freeze) writes nothing when it resumes, before its elector notices.
   */
  fence: (() => string | undefined) | undefined;

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(options.query ?? {}))
      if (v !== undefined) url.searchParams.set(k, String(v));
    const auth = await this.authenticated(url);
    // Asked after the last await before sending: a pause in between must not slip a write through.
    if (method !== 'GET' && !options.unfenced) {
      const closed = this.fence?.();
      if (closed !== undefined) throw new FencedError(method, path, closed);
    }
    const headers: Record<string, string> = { ...auth.headers, Accept: 'application/json' };
    if (options.body !== undefined) headers['Content-Type'] = options.contentType ?? 'application/json';
    const started = performance.now();
    let code = 0;
    try {
      // undici's request(), not fetch(): the same connection pool, without the WHATWG Request,
      // Response and web-stream objects fetch allocates per call (measured: less CPU and GC per write).
      const timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
      const response = await request(url, {
        method: method as Dispatcher.HttpMethod,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        dispatcher: auth.dispatcher,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: options.signal,
      });
      code = response.statusCode;
      const text = await response.body.text();
      if (code >= 200 && code < 300) return (text ? parseJson(text, method, path) : undefined) as T;
      throw new ApiError(method, path, code, parseStatus(text, code));
    } catch (err) {
      // No answer in time: the connection may be dead though open. undici would probe it for as
      // long again before giving it up, and every request behind this one would wait on it.
      if (TIMEOUT_CODES.has((err as { code?: string }).code ?? '')) this.dropConnections(auth.dispatcher);
      throw err;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      for (const o of this.observers) o(method, path, code, seconds);
    }
  }

  /**
   * Closes `dispatcher`'s connections if it is still the shared one: requests still on them fail
   * (their callers retry) and the next request opens a new connection.
   */
  private dropConnections(dispatcher: Dispatcher | undefined): void {
    if (!dispatcher || this.credentials?.dispatcher !== dispatcher) return;
    this.credentials = undefined;
    dispatcher.destroy().catch(() => {});
  }

  /** Current credential headers and the shared dispatcher (the first one client-node made). */
  private async authenticated(
    url: URL,
  ): Promise<{ headers: Record<string, string>; dispatcher: ReturnType<RequestContext['getDispatcher']> }> {
    const now = performance.now();
    if (!this.credentials || now - this.credentials.at > CREDENTIALS_TTL_MS) {
      const ctx = new RequestContext(url.toString(), HttpMethod.GET);
      await this.config.applySecurityAuthentication(ctx);
      this.credentials = {
        headers: ctx.getHeaders(),
        dispatcher: this.credentials?.dispatcher ?? ctx.getDispatcher(),
        at: now,
      };
    }
    return this.credentials;
  }

  get<T>(path: string, query?: RequestOptions['query'], signal?: AbortSignal): Promise<T> {
    return this.request<T>(HttpMethod.GET, path, { query, signal });
  }

  create<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>(HttpMethod.POST, path, { body });
  }

  /** JSON merge patch (RFC 7386). Put `metadata.resourceVersion` in the patch for a precondition. */
  mergePatch<T>(path: string, patch: unknown): Promise<T> {
    return this.request<T>(HttpMethod.PATCH, path, {
      body: patch,
      contentType: 'application/merge-patch+json',
    });
  }

  delete<T>(path: string, preconditions?: { uid?: string; resourceVersion?: string }): Promise<T> {
    const body = preconditions ? { apiVersion: 'v1', kind: 'DeleteOptions', preconditions } : undefined;
    return this.request<T>(HttpMethod.DELETE, path, { body });
  }

  /**
   * Opens a watch stream. `onEvent` gets each event's type and raw object. The returned promise
   * settles when the stream ends: it resolves when the server closes it, and rejects on an HTTP
   * error (an `ApiError`), a network error, or when no byte arrived for `inactivityTimeoutMs`
   * (bookmarks keep a healthy watch talking). `signal` aborts it (then it resolves).
   */
  async watch(
    path: string,
    query: RequestOptions['query'],
    onEvent: (type: WatchEventType, object: unknown) => void,
    { signal, inactivityTimeoutMs }: { signal: AbortSignal; inactivityTimeoutMs: number },
  ): Promise<void> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries({ ...query, watch: true }))
      if (v !== undefined) url.searchParams.set(k, String(v));
    const auth = await this.authenticated(url);
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, inactivityTimeoutMs);
    };
    try {
      arm();
      const response = await request(url, {
        headers: { ...auth.headers, Accept: 'application/json' },
        dispatcher: auth.dispatcher,
        signal: controller.signal,
        // The inactivity timer below is this stream's watchdog; undici's own would fire first.
        bodyTimeout: 0,
      });
      for (const o of this.observers) o('WATCH', path, response.statusCode, 0);
      if (response.statusCode !== 200) {
        throw new ApiError(
          'WATCH',
          path,
          response.statusCode,
          parseStatus(await response.body.text(), response.statusCode),
        );
      }
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const chunk of response.body) {
        arm();
        buffered += decoder.decode(chunk as Buffer, { stream: true });
        let newline = buffered.indexOf('\n');
        while (newline >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line.trim()) {
            const event = parseJson(line, 'WATCH', path) as { type: WatchEventType; object: unknown };
            onEvent(event.type, event.object);
          }
          newline = buffered.indexOf('\n');
        }
      }
    } catch (err) {
      if (timedOut) {
        // Only this watch stalled: a dead connection is the PING health check's to find (within
        // 10 s, long before this limit), so the connection, and every request and watch on it,
        // stays. Measured: at 10,000 namespaces the namespaces watch of a busy API server once
        // went 90 s without a bookmark on a connection that answered every PING.
        throw new Error(`watch ${path}: no data for ${inactivityTimeoutMs / 1000}s`);
      }
      if (signal.aborted) return;
      throw err;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }
}

/** client-node's KubeConfig builds the dispatcher in a method its types keep private. */
interface DispatcherFactory {
  createDispatcher(cluster: Cluster | null, agentOptions: object): Dispatcher | undefined;
  [HEALTH_CHECKED]?: true;
}
const HEALTH_CHECKED = Symbol('kubeClient.healthChecked');

/**
 * Makes `config` build its direct (no proxy) dispatcher as client-node does, with the same TLS
 * options, plus the HTTP/2 PING health check. Where client-node would leave undici's global
 * dispatcher in charge (no TLS options of its own: a public CA, say), it gets one of its own too.
 * Dispatchers through a proxy stay client-node's own.
 */
function withConnectionHealthCheck(config: KubeConfig): void {
  const factory = config as unknown as DispatcherFactory;
  if (factory[HEALTH_CHECKED]) return;
  const original = factory.createDispatcher.bind(config);
  factory.createDispatcher = (cluster, agentOptions) => {
    const options = config.createDispatcherOptions(cluster, agentOptions);
    const h2Options = { pingInterval: PING_INTERVAL_MS };
    if (options.type === 'agent') return new Agent({ connect: options.connect, h2Options });
    if (options.type === 'none') return new Agent({ h2Options });
    return original(cluster, agentOptions);
  };
  factory[HEALTH_CHECKED] = true;
}

/**
 * JSON.parse whose error never quotes the text: a truncated Secret list or watch event would
 * otherwise put a fragment of a credential into a log line.
 */
function parseJson(text: string, method: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${method} ${path}: the answer is not valid JSON (${text.length} bytes)`);
  }
}

function parseStatus(text: string, code: number): Status {
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === 'object') return parsed as Status;
  } catch {
    // Not JSON (a proxy's error page, an empty 401 body).
  }
  return { code, message: text.slice(0, 200) };
}
