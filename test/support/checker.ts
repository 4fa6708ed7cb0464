/**
 * An invariant checker for regcred's world, for fault scenarios and the soak. It reads only
 * through the API (its own client; it shares no cache, code path or clock with the operator) and
 * decides what the world should be from the RegistryCredentials' specs by its own reading of the
 * README, not with regcred's code.
 *
 * Invariants, per RegistryCredential that is not suspended nor being deleted:
 * - every selected namespace (names ∪ selector, minus exclude, minus the source's namespace; not
 *   terminating; without a foreign Secret of the copy's name) holds a copy with the source's
 *   credential (`missing-copy`, `stale-copy`), and each of its selected ServiceAccounts lists it once
 *   (`missing-entry`, `duplicate-entry`);
 * - no copy of it in an unselected namespace (`unselected-copy`);
 * - when Ready=True for the current generation, the status counts agree with the world
 *   (`status-mismatch`);
 * and for the whole world:
 * - a copy or a recorded entry whose RegistryCredential is gone is an orphan (`orphan-copy`,
 *   `orphan-entry`);
 * - an imagePullSecrets entry someone else wrote (one regcred's annotation does not record),
 *   once seen, is never lost while its ServiceAccount exists (`lost-foreign-entry`).
 *
 * Guarantees: the convergence invariants are violations only when a problem persists longer than
 * `boundMs` (counted from when the checker first saw it, or from the end of the last fault, if
 * later); a lost foreign entry is a violation the moment it is seen. Every violation names the
 * object and the time it was found; `first` is the first one.
 */
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, PULL_SECRETS_ANNOTATION } from '../../src/regcred/objects.ts';
import type { KubeClient } from '../../src/runtime/kube.ts';

export type ViolationKind =
  | 'missing-copy'
  | 'stale-copy'
  | 'missing-entry'
  | 'duplicate-entry'
  | 'unselected-copy'
  | 'status-mismatch'
  | 'orphan-copy'
  | 'orphan-entry'
  | 'lost-foreign-entry';

export interface Problem {
  kind: ViolationKind;
  /** `namespace/name` of the object, or the credential's name for `status-mismatch`. */
  object: string;
  credential?: string;
  detail: string;
}

export interface Violation extends Problem {
  /** ISO time the checker found it a violation. */
  at: string;
  /** How long it had persisted, ms (0 for a lost entry). */
  persistedMs: number;
}

interface Meta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  deletionTimestamp?: string;
  resourceVersion?: string;
}
interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}
export interface CredentialJson {
  metadata: Meta;
  spec: {
    source: { secretRef: { namespace: string; name: string } };
    secretName?: string;
    namespaces?: { names?: string[]; selector?: Selector; exclude?: string[] };
    serviceAccounts?: { names?: string[]; selector?: Selector };
    suspend?: boolean;
  };
  status?: {
    observedGeneration?: number;
    conditions?: { type: string; status: string }[];
    namespaces?: { selected?: number; synced?: number };
    serviceAccounts?: { patched?: number };
  };
}
export interface SecretJson {
  metadata: Meta;
  type?: string;
  data?: Record<string, string>;
}
export interface ServiceAccountJson {
  metadata: Meta;
  imagePullSecrets?: { name: string }[];
}
export interface NamespaceJson {
  metadata: Meta;
  status?: { phase?: string };
}

/** Everything the checker reads, at one moment. */
export interface Snapshot {
  credentials: CredentialJson[];
  namespaces: NamespaceJson[];
  secrets: SecretJson[];
  serviceAccounts: ServiceAccountJson[];
}

export function matches(selector: Selector | undefined, labels: Record<string, string> = {}): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const ok =
      e.operator === 'In'
        ? has && (e.values ?? []).includes(value!)
        : e.operator === 'NotIn'
          ? !has || !(e.values ?? []).includes(value!)
          : e.operator === 'Exists'
            ? has
            : !has;
    if (!ok) return false;
  }
  return true;
}

function glob(pattern: string, name: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replaceAll('*', '.*')
    .replaceAll('?', '.');
  return new RegExp(`^${re}$`).test(name);
}

/** The registries a dockerconfigjson / dockercfg Secret gives kubelet: registry → `user:password`. */
export function logins(secret: SecretJson | undefined): Map<string, string> | undefined {
  try {
    const key = secret?.type === 'kubernetes.io/dockercfg' ? '.dockercfg' : '.dockerconfigjson';
    const text = secret?.data?.[key];
    if (!text) return undefined;
    const doc = JSON.parse(Buffer.from(text, 'base64').toString()) as Record<string, unknown>;
    const auths = (key === '.dockercfg' ? doc : doc.auths) as
      | Record<string, { username?: string; password?: string; auth?: string }>
      | undefined;
    if (!auths || typeof auths !== 'object') return undefined;
    const out = new Map<string, string>();
    for (const [registry, entry] of Object.entries(auths)) {
      const decoded = entry.auth ? Buffer.from(entry.auth, 'base64').toString() : '';
      const user = entry.username ?? decoded.slice(0, decoded.indexOf(':'));
      const password = entry.password ?? decoded.slice(decoded.indexOf(':') + 1);
      out.set(registry, `${user}:${password}`);
    }
    return out.size > 0 ? out : undefined;
  } catch {
    return undefined;
  }
}

function sameLogins(a: Map<string, string>, b: Map<string, string> | undefined): boolean {
  if (!b || a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

const isManaged = (s: SecretJson) => s.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
const recorded = (sa: ServiceAccountJson): Record<string, string> => {
  try {
    return JSON.parse(sa.metadata.annotations?.[PULL_SECRETS_ANNOTATION] ?? '{}');
  } catch {
    return {};
  }
};
const key = (m: Meta) => `${m.namespace}/${m.name}`;

/** The problems in one snapshot, by the invariants above (all but the lost foreign entry); pure. */
export function problemsIn(world: Snapshot): Problem[] {
  const problems: Problem[] = [];
  const secrets = new Map(world.secrets.map((s) => [key(s.metadata), s]));
  const accountsByNs = new Map<string, ServiceAccountJson[]>();
  for (const sa of world.serviceAccounts) {
    const list = accountsByNs.get(sa.metadata.namespace!) ?? [];
    list.push(sa);
    accountsByNs.set(sa.metadata.namespace!, list);
  }
  const credentials = new Map(world.credentials.map((c) => [c.metadata.name, c]));

  for (const rc of world.credentials) {
    const name = rc.metadata.name;
    if (rc.spec.suspend || rc.metadata.deletionTimestamp) continue;
    const copyName = rc.spec.secretName ?? name;
    const ref = rc.spec.source.secretRef;
    const source = secrets.get(`${ref.namespace}/${ref.name}`);
    const want = logins(source);
    const spec = rc.spec.namespaces ?? {};
    const selected = new Set<string>();
    for (const ns of world.namespaces) {
      const n = ns.metadata.name;
      if (n === ref.namespace) continue;
      if (!(spec.names ?? []).includes(n) && !matches(spec.selector, ns.metadata.labels)) continue;
      if ((spec.exclude ?? []).some((p) => glob(p, n))) continue;
      if (ns.metadata.deletionTimestamp || ns.status?.phase === 'Terminating') continue;
      selected.add(n);
    }
    const saSpec = rc.spec.serviceAccounts ?? { names: ['default'] };
    let accounts = 0;
    for (const ns of selected) {
      const copy = secrets.get(`${ns}/${copyName}`);
      if (copy && !isManaged(copy)) continue; // someone else's Secret: a conflict regcred reports
      if (!copy)
        problems.push({ kind: 'missing-copy', object: `${ns}/${copyName}`, credential: name, detail: '' });
      else if (want && !sameLogins(want, logins(copy)))
        problems.push({
          kind: 'stale-copy',
          object: `${ns}/${copyName}`,
          credential: name,
          detail: `source ${ref.namespace}/${ref.name}@${source?.metadata.resourceVersion}`,
        });
      for (const sa of accountsByNs.get(ns) ?? []) {
        const wanted =
          (saSpec.names ?? []).includes('*') ||
          (saSpec.names ?? []).includes(sa.metadata.name) ||
          matches(saSpec.selector, sa.metadata.labels);
        if (!wanted || sa.metadata.deletionTimestamp) continue;
        accounts++;
        const listed = (sa.imagePullSecrets ?? []).filter((e) => e.name === copyName).length;
        if (listed > 1)
          problems.push({
            kind: 'duplicate-entry',
            object: key(sa.metadata),
            credential: name,
            detail: `${copyName} ×${listed}`,
          });
        if (listed === 0)
          problems.push({
            kind: 'missing-entry',
            object: key(sa.metadata),
            credential: name,
            detail: copyName,
          });
      }
    }
    for (const s of world.secrets) {
      if (!isManaged(s) || s.metadata.labels?.['regcred.dev/credential'] !== name) continue;
      const ns = s.metadata.namespace!;
      if (!selected.has(ns))
        problems.push({ kind: 'unselected-copy', object: key(s.metadata), credential: name, detail: '' });
    }
    const ready = rc.status?.conditions?.find((c) => c.type === 'Ready');
    if (ready?.status === 'True' && rc.status?.observedGeneration === rc.metadata.generation) {
      const st = rc.status;
      const counted = { selected: selected.size, synced: selected.size, patched: accounts };
      const reported = {
        selected: st?.namespaces?.selected,
        synced: st?.namespaces?.synced,
        patched: st?.serviceAccounts?.patched,
      };
      if (JSON.stringify(counted) !== JSON.stringify(reported))
        problems.push({
          kind: 'status-mismatch',
          object: name,
          credential: name,
          detail: `Ready with ${JSON.stringify(reported)}, the world has ${JSON.stringify(counted)}`,
        });
    }
  }

  for (const s of world.secrets) {
    const owner = s.metadata.labels?.['regcred.dev/credential'];
    if (isManaged(s) && owner && !credentials.has(owner))
      problems.push({ kind: 'orphan-copy', object: key(s.metadata), credential: owner, detail: '' });
  }
  for (const sa of world.serviceAccounts) {
    for (const [entry, owner] of Object.entries(recorded(sa))) {
      if (!credentials.has(owner))
        problems.push({ kind: 'orphan-entry', object: key(sa.metadata), credential: owner, detail: entry });
    }
  }
  return problems;
}

/** Reads one snapshot through the API. */
export async function snapshot(client: KubeClient): Promise<Snapshot> {
  const list = async <T>(path: string) => (await client.get<{ items: T[] }>(path)).items;
  // The credentials first: a copy made for a credential created after this list is read later and
  // looks like an orphan for one round at most (orphans are bounded like everything else).
  const credentials = await list<CredentialJson>('/apis/regcred.dev/v1alpha1/registrycredentials');
  const [namespaces, secrets, serviceAccounts] = await Promise.all([
    list<NamespaceJson>('/api/v1/namespaces'),
    list<SecretJson>('/api/v1/secrets'),
    list<ServiceAccountJson>('/api/v1/serviceaccounts'),
  ]);
  return { credentials, namespaces, secrets, serviceAccounts };
}

export interface CheckerOptions {
  /** How long a convergence problem may persist before it is a violation. */
  boundMs: number;
  /** Time between snapshots. */
  intervalMs?: number;
  /** Called at once with each violation. */
  onViolation?: (v: Violation) => void;
}

export class Checker {
  readonly violations: Violation[] = [];
  /** Snapshots taken, and those that failed to read (the API may be down during a fault). */
  readonly rounds = { ok: 0, failed: 0 };
  /** The problems of the latest snapshot. */
  current: Problem[] = [];
  /** The longest a convergence problem persisted before it went away (outside faults too), ms. */
  worstMs = 0;
  /** That problem. */
  worst: Problem | undefined;
  private readonly client: KubeClient;
  private readonly options: CheckerOptions;
  private readonly since = new Map<string, number>();
  private readonly reported = new Set<string>();
  /** `namespace/sa` → entries someone else wrote, as last seen. */
  private readonly foreign = new Map<string, Set<string>>();
  private graceFrom = 0;
  private inFault = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** When the latest judged snapshot ended, and when it began. */
  private latestAt = 0;
  private latestBegan = 0;
  private lastProblems = new Map<string, Problem>();

  constructor(client: KubeClient, options: CheckerOptions) {
    this.client = client;
    this.options = options;
  }

  get first(): Violation | undefined {
    return this.violations[0];
  }

  start(): void {
    const loop = async () => {
      await this.round();
      if (this.timer !== undefined) this.timer = setTimeout(loop, this.options.intervalMs ?? 1000);
    };
    this.timer = setTimeout(loop, 0);
  }

  async stop(): Promise<Violation[]> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    return this.violations;
  }

  /** A fault begins: convergence is not timed until `faultEnded()`; safety still is. */
  faultBegan(): void {
    this.inFault = true;
  }

  /** A fault ended: every convergence problem gets `boundMs` from now. */
  faultEnded(): void {
    this.inFault = false;
    this.graceFrom = Date.now();
  }

  /** The test removes an entry itself, on purpose: not a loss. */
  forgetForeign(serviceAccount: string, entry: string): void {
    this.foreign.get(serviceAccount)?.delete(entry);
  }

  /**
   * Resolves when a snapshot begun after the call has no problem, with the time from the call to
   * that snapshot's end (one begun before could have read part of the world before the change).
   */
  async converged(timeoutMs: number): Promise<number> {
    const asked = Date.now();
    const deadline = asked + timeoutMs;
    for (;;) {
      await new Promise((r) => setTimeout(r, 200));
      if (this.latestBegan >= asked && this.current.length === 0) return this.latestAt - asked;
      if (Date.now() > deadline)
        throw new Error(
          `not converged after ${timeoutMs / 1000}s: ${this.current.length} problems, first ${JSON.stringify(this.current[0])}`,
        );
    }
  }

  /** One snapshot and its verdicts; also what `start()` runs each interval. */
  round(): Promise<void> {
    this.running = (async () => {
      let world: Snapshot;
      const began = Date.now();
      try {
        world = await snapshot(this.client);
      } catch {
        this.rounds.failed++;
        return;
      }
      this.rounds.ok++;
      this.judge(world, Date.now());
      this.latestBegan = began;
    })();
    return this.running;
  }

  private judge(world: Snapshot, now: number): void {
    const problems = problemsIn(world);
    problems.push(...this.lostForeignEntries(world));
    const keys = new Set<string>();
    for (const p of problems) {
      const k = `${p.kind} ${p.object} ${p.credential ?? ''}`;
      keys.add(k);
      if (!this.since.has(k)) this.since.set(k, now);
      const from = Math.max(this.since.get(k)!, this.graceFrom);
      const persisted = now - this.since.get(k)!;
      const immediate = p.kind === 'lost-foreign-entry';
      if (this.reported.has(k)) continue;
      if (immediate || (!this.inFault && now - from > this.options.boundMs)) {
        this.reported.add(k);
        const v: Violation = {
          ...p,
          at: new Date(now).toISOString(),
          persistedMs: immediate ? 0 : persisted,
        };
        this.violations.push(v);
        this.options.onViolation?.(v);
      }
    }
    for (const [k, at] of [...this.since]) {
      if (keys.has(k)) continue;
      this.since.delete(k);
      if (now - at > this.worstMs) {
        this.worstMs = now - at;
        this.worst = this.lastProblems.get(k);
      }
    }
    this.lastProblems = new Map(problems.map((p) => [`${p.kind} ${p.object} ${p.credential ?? ''}`, p]));
    for (const k of [...this.reported]) if (!keys.has(k)) this.reported.delete(k);
    this.current = problems.filter((p) => p.kind !== 'lost-foreign-entry');
    this.latestAt = now;
  }

  private lostForeignEntries(world: Snapshot): Problem[] {
    const lost: Problem[] = [];
    const present = new Set<string>();
    for (const sa of world.serviceAccounts) {
      const k = key(sa.metadata);
      present.add(k);
      const ours = recorded(sa);
      const entries = new Set((sa.imagePullSecrets ?? []).map((e) => e.name));
      const known = this.foreign.get(k) ?? new Set<string>();
      for (const e of known)
        if (!entries.has(e)) {
          lost.push({ kind: 'lost-foreign-entry', object: k, detail: e });
          known.delete(e);
        }
      for (const e of entries) if (!Object.hasOwn(ours, e)) known.add(e);
      if (known.size > 0) this.foreign.set(k, known);
    }
    for (const k of [...this.foreign.keys()]) if (!present.has(k)) this.foreign.delete(k);
    return lost;
  }
}
