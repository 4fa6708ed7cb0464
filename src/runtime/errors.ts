/**
 * The one place that decides what an API error means for a reconcile.
 *
 * - `conflict`: 409 Conflict, or a failed precondition / JSON-Patch `test` (the API server answers
 *   those with 409, or 422 without field causes): the cache was stale; retry at once from it.
 * - `alreadyExists`: a create hit an existing object the cache does not show.
 * - `notFound`: the object is gone: success for a delete, nothing to patch for a patch.
 * - `terminating`: 403 because the namespace is being deleted: leave it alone.
 * - `invalid`: any other 400/422: the request itself is wrong; report it, retrying will not help soon.
 * - `forbidden` / `unauthorized`: RBAC or credentials; back off, loudly.
 * - `retryable`: 429, 5xx, timeouts and network errors: back off and retry.
 */
import { ApiError } from './kube.ts';

export type ErrorKind =
  | 'conflict'
  | 'alreadyExists'
  | 'notFound'
  | 'terminating'
  | 'invalid'
  | 'forbidden'
  | 'unauthorized'
  | 'gone'
  | 'retryable';

export interface ClassifiedError {
  kind: ErrorKind;
  code: number;
  /** The API's machine reason (e.g. `AlreadyExists`), or a short name for network errors. */
  reason: string;
  message: string;
}

export function classify(err: unknown): ClassifiedError {
  if (err instanceof ApiError) {
    const { code, status } = err;
    const reason = status.reason ?? String(code);
    const message = status.message ?? err.message;
    const kind = kindOf(code, reason, message, status.details?.causes ?? []);
    return { kind, code, reason, message };
  }
  const e = err as { name?: string; message?: string; code?: string; statusCode?: number };
  if (typeof e?.statusCode === 'number') {
    // Watch start errors from client-node carry only the HTTP status.
    const kind = e.statusCode === 410 ? 'gone' : kindOf(e.statusCode, '', e.message ?? '', []);
    return { kind, code: e.statusCode, reason: String(e.statusCode), message: e.message ?? '' };
  }
  return {
    kind: 'retryable',
    code: 0,
    reason: e?.code ?? e?.name ?? 'Error',
    message: e?.message ?? String(err),
  };
}

/**
 * A JSON-Patch `test` op that failed: Kubernetes 1.36 answers 422 Invalid with only this generic
 * message and no causes (field validation errors always carry causes); older servers said
 * "testing value ... failed".
 */
function isFailedPatchTest(message: string, causes: { type?: string }[]): boolean {
  if (/testing value|test operation failed/i.test(message)) return true;
  return causes.length === 0 && message === 'the server rejected our request due to an error in our request';
}

function kindOf(code: number, reason: string, message: string, causes: { type?: string }[]): ErrorKind {
  if (code === 409) return reason === 'AlreadyExists' ? 'alreadyExists' : 'conflict';
  if (code === 422 && isFailedPatchTest(message, causes)) return 'conflict';
  if (code === 404) return 'notFound';
  if (code === 410) return 'gone';
  if (code === 403) {
    return causes.some((c) => c.type === 'NamespaceTerminating') || /being terminated/.test(message)
      ? 'terminating'
      : 'forbidden';
  }
  if (code === 401) return 'unauthorized';
  if (code === 400 || code === 422) return 'invalid';
  return 'retryable';
}
