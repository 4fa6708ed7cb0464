/**
 * Decides whether a RegistryCredential's source can be propagated: allowed namespace, present,
 * of the right type, and a credential kubelet can parse. Nothing is read from a namespace that is
 * not allowed (there is no cache of it). Parsing is memoised per source resourceVersion.
 *
 * `contentVersion` is the oldest resourceVersion of the source, seen by this process, with the same
 * credential as now: an edit of the source's labels moves its resourceVersion but not its content,
 * and must not make a copy written before it look older than the source (see
 * SOURCE_VERSION_ANNOTATION). After a restart it starts again at the current version.
 */
import type { RegistryCredential } from '../api/v1alpha1.ts';
import type { Store } from '../runtime/store.ts';
import { parseSourceSecret } from './credential.ts';
import type { Secret } from './objects.ts';
import { sourceOf } from './plan.ts';
import type { SourceVerdict } from './status.ts';

export type SourceState = SourceVerdict & { dataBase64?: string; contentVersion?: string };

export class Sources {
  private readonly allowed: ReadonlySet<string>;
  private readonly stores: ReadonlyMap<string, Store<Secret>>;
  private readonly parsed = new Map<string, SourceState>();
  /** Per source UID: the last valid state, for its contentVersion. */
  private readonly lastValid = new Map<string, SourceState>();

  constructor(stores: ReadonlyMap<string, Store<Secret>>) {
    this.stores = stores;
    this.allowed = new Set(stores.keys());
  }

  stateOf(rc: RegistryCredential): SourceState {
    const { namespace, name } = sourceOf(rc);
    const ref = `${namespace}/${name}`;
    if (!this.allowed.has(namespace)) {
      return {
        valid: false,
        reason: 'SourceNotAllowed',
        message: `source ${ref} is outside the operator's source namespaces (${[...this.allowed].join(', ')}); nothing is read from it`,
      };
    }
    const secret = this.stores.get(namespace)?.get(ref);
    if (!secret)
      return { valid: false, reason: 'SourceNotFound', message: `source Secret ${ref} does not exist` };
    const memoKey = `${secret.metadata.uid}/${secret.metadata.resourceVersion}`;
    let state = this.parsed.get(memoKey);
    if (!state) {
      const result = parseSourceSecret(secret);
      const previous = this.lastValid.get(secret.metadata.uid);
      state = result.ok
        ? {
            valid: true,
            resourceVersion: secret.metadata.resourceVersion,
            message: `${ref} holds credentials for ${result.entries.size} registr${result.entries.size === 1 ? 'y' : 'ies'}`,
            dataBase64: result.dataBase64,
            contentVersion:
              previous?.dataBase64 === result.dataBase64
                ? previous.contentVersion
                : secret.metadata.resourceVersion,
          }
        : { valid: false, reason: result.reason, message: `source Secret ${ref}: ${result.message}` };
      if (this.parsed.size > 1000) this.parsed.clear();
      if (this.lastValid.size > 1000) this.lastValid.clear();
      this.parsed.set(memoKey, state);
      if (state.valid) this.lastValid.set(secret.metadata.uid, state);
    }
    return state;
  }
}
