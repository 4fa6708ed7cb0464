/**
 * The work queue's keys: what regcred reconciles. Encoded as the strings the queue, logs and
 * metrics carry (`credential:<rc>`, `namespace:<rc>/<ns>`, `status:<rc>`); decoding is total.
 *
 * - `credential`: the finalizer and the fan-out to every namespace the credential concerns.
 * - `namespace`: one (credential, namespace) pair: its copy, ServiceAccounts and removals.
 * - `status`: the credential's status, coalesced (written at most about once a second).
 */
import type { KeyCodec } from '../runtime/reconcile.ts';

export type Key =
  | { kind: 'credential'; credential: string }
  | { kind: 'namespace'; credential: string; namespace: string }
  | { kind: 'status'; credential: string };

export const credentialKey = (credential: string): Key => ({ kind: 'credential', credential });
export const namespaceKey = (credential: string, namespace: string): Key => ({
  kind: 'namespace',
  credential,
  namespace,
});
export const statusKey = (credential: string): Key => ({ kind: 'status', credential });

/** Status writes are coalesced: a change is written at most this long after it happened. */
export const STATUS_DELAY_MS = 1000;

export const keyCodec: KeyCodec<Key> = {
  encode(key) {
    return key.kind === 'namespace'
      ? `namespace:${key.credential}/${key.namespace}`
      : `${key.kind}:${key.credential}`;
  },
  decode(text) {
    const colon = text.indexOf(':');
    const kind = text.slice(0, colon);
    const rest = text.slice(colon + 1);
    if (kind === 'namespace') {
      const slash = rest.indexOf('/');
      return namespaceKey(rest.slice(0, slash), rest.slice(slash + 1));
    }
    return kind === 'status' ? statusKey(rest) : credentialKey(rest);
  },
};
