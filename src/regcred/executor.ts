/**
 * Carries out a namespace plan (namespace-plan.ts), in its order, and nothing else.
 *
 * Guarantees:
 * - Every write goes through the limiter (bounded parallelism) and carries the plan's
 *   precondition (create: absent; patch and delete: the resourceVersion the plan was made from),
 *   and its answer is written through to the cache, so the next plan sees it.
 * - A step that fails throws, and the later steps do not run: an entry never points at a copy
 *   that is not there, and a copy is never removed while an entry may still reference it.
 * - The plan's Events are recorded after the write they describe succeeded.
 *
 * Errors: what the API answers, except where the world moved under the plan: a create that finds
 * an object, or a patch that finds none, ends with `replan` (the caller plans again with what was
 * learnt); a ServiceAccount or copy deleted meanwhile needs no write.
 */
import { API_VERSION, PLURAL, type RegistryCredential } from '../api/v1alpha1.ts';
import { classify } from '../runtime/errors.ts';
import type { EventRecorder, ObjectReference } from '../runtime/events.ts';
import type { KubeClient } from '../runtime/kube.ts';
import type { Limiter } from '../runtime/limiter.ts';
import { keyOf, type Store } from '../runtime/store.ts';
import type { NamespacePlan, PlannedEvent } from './namespace-plan.ts';
import {
  type Namespace,
  projectRegistryCredential,
  projectSecret,
  projectServiceAccount,
  type Secret,
  type ServiceAccount,
} from './objects.ts';
import { references } from './plan.ts';

export interface Caches {
  credentials: Store<RegistryCredential>;
  namespaces: Store<Namespace>;
  /** Indexed by `namespace`. */
  serviceAccounts: Store<ServiceAccount>;
  /** regcred-labelled Secrets; indexed by `namespace` and by `credential` (label). */
  copies: Store<Secret>;
}

export type Execution =
  | { kind: 'done'; patched: number }
  /** The plan met a world it did not know: plan again, with `existing` if one was found. */
  | { kind: 'replan'; existing?: Secret };

export interface ExecutorOptions {
  client: KubeClient;
  caches: Caches;
  limiter: Limiter;
  events: EventRecorder;
}

export class Executor {
  readonly limiter: Limiter;
  private readonly client: KubeClient;
  private readonly caches: Caches;
  private readonly events: EventRecorder;

  constructor(options: ExecutorOptions) {
    this.client = options.client;
    this.caches = options.caches;
    this.limiter = options.limiter;
    this.events = options.events;
  }

  async run(plan: Extract<NamespacePlan, { kind: 'converge' }>, namespace: string): Promise<Execution> {
    const step = plan.copy;
    const secrets = `/api/v1/namespaces/${namespace}/secrets`;
    if (step.kind === 'stop') {
      this.announce(step.events, undefined);
      return { kind: 'done', patched: 0 };
    }
    if (step.kind === 'create') {
      let created: Secret;
      try {
        created = projectSecret(
          await this.limiter.run(() => this.client.create<unknown>(secrets, step.body)),
        );
      } catch (err) {
        if (classify(err).kind !== 'alreadyExists') throw err;
        const existing = await this.read(`${secrets}/${plan.secretName}`);
        if (!existing) throw err; // deleted meanwhile: retry
        return { kind: 'replan', existing };
      }
      this.caches.copies.writeThrough(created, undefined);
      this.announce(step.events, created);
    } else if (step.kind === 'patch') {
      const cacheKey = `${namespace}/${step.name}`;
      const cachedRv = this.caches.copies.get(cacheKey)?.metadata.resourceVersion;
      let updated: Secret;
      try {
        updated = projectSecret(
          await this.limiter.run(() =>
            this.client.mergePatch<unknown>(`${secrets}/${step.name}`, step.patch),
          ),
        );
      } catch (err) {
        if (classify(err).kind !== 'notFound') throw err;
        this.caches.copies.deleteThrough(cacheKey, cachedRv); // deleted meanwhile: create it again
        return { kind: 'replan' };
      }
      this.caches.copies.writeThrough(updated, cachedRv);
      this.announce(step.events, updated);
    }

    let patched = 0;
    await Promise.all(
      plan.serviceAccounts.map(async ({ sa, want, patch }) => {
        let current = sa;
        if (patch) {
          try {
            const path = `/api/v1/namespaces/${namespace}/serviceaccounts/${sa.metadata.name}`;
            current = projectServiceAccount(
              await this.limiter.run(() => this.client.mergePatch<unknown>(path, patch)),
            );
            this.caches.serviceAccounts.writeThrough(current, sa.metadata.resourceVersion);
          } catch (err) {
            if (classify(err).kind === 'notFound') return; // deleted meanwhile: nothing to patch
            throw err;
          }
        }
        if (want && references(current, plan.secretName)) patched++;
      }),
    );

    for (const { copy, events } of plan.removals) {
      const options = { uid: copy.metadata.uid, resourceVersion: copy.metadata.resourceVersion };
      await this.limiter.run(() =>
        this.client.delete(`${secrets}/${copy.metadata.name}`, options).catch((err: unknown) => {
          if (classify(err).kind !== 'notFound') throw err;
        }),
      );
      this.caches.copies.deleteThrough(keyOf(copy), copy.metadata.resourceVersion);
      this.announce(events, undefined);
    }
    return { kind: 'done', patched };
  }

  /** A merge patch of a RegistryCredential (finalizer), written through to the cache. */
  async patchCredential(rc: RegistryCredential, patch: unknown, subresource = ''): Promise<void> {
    const path = `/apis/${API_VERSION}/${PLURAL}/${rc.metadata.name}${subresource}`;
    const updated = await this.limiter.run(() => this.client.mergePatch<unknown>(path, patch));
    this.caches.credentials.writeThrough(projectRegistryCredential(updated), rc.metadata.resourceVersion);
  }

  private async read(path: string): Promise<Secret | undefined> {
    try {
      return projectSecret(await this.client.get(path));
    } catch (err) {
      if (classify(err).kind === 'notFound') return undefined;
      throw err;
    }
  }

  private announce(events: PlannedEvent[], written: Secret | undefined): void {
    for (const e of events) {
      const about = e.about === 'copy' ? written : e.about;
      if (about) this.events.record(refTo(about), e.type, e.reason, e.message);
    }
  }
}

function refTo(secret: Secret): ObjectReference {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    name: secret.metadata.name,
    namespace: secret.metadata.namespace,
    uid: secret.metadata.uid,
  };
}
