/**
 * A finalizer around a reconcile, as kube-rs's `finalizer` helper: the object carries `name` in
 * its finalizers while the controller may have written anything for it, so its deletion waits for
 * the controller's cleanup.
 *
 * Guarantees:
 * - `apply` runs only once the finalizer is on the object (added first, with the object's
 *   resourceVersion as precondition).
 * - `cleanup` runs whenever the object is being deleted and still carries the finalizer, whether
 *   or not `apply` ever ran; it must be idempotent. When it reports `done`, the finalizer is
 *   removed; a 404 then is success (someone else finished the deletion).
 * - An object being deleted without the finalizer is left alone.
 *
 * Errors: what `apply`, `cleanup` or the patch throw (a 409 means a stale cache: retry).
 */
import { classify } from './errors.ts';

export interface Finalizable {
  metadata: { finalizers?: string[]; deletionTimestamp?: string; resourceVersion?: string };
}

export interface FinalizerSteps<R> {
  /** Writes `metadata.finalizers` (with `resourceVersion` as precondition). */
  patch: (metadata: { finalizers: string[]; resourceVersion?: string }) => Promise<void>;
  apply: () => Promise<R>;
  /** Cleans up; `done: false` keeps the finalizer (cleanup is still under way). */
  cleanup: () => Promise<{ done: boolean; result: R }>;
}

export async function finalized<R>(
  obj: Finalizable,
  name: string,
  steps: FinalizerSteps<R>,
): Promise<{ phase: 'apply' | 'cleanup' | 'removed' | 'ignored'; result?: R }> {
  const finalizers = obj.metadata.finalizers ?? [];
  const resourceVersion = obj.metadata.resourceVersion;
  if (obj.metadata.deletionTimestamp) {
    if (!finalizers.includes(name)) return { phase: 'ignored' };
    const { done, result } = await steps.cleanup();
    if (!done) return { phase: 'cleanup', result };
    try {
      await steps.patch({ finalizers: finalizers.filter((f) => f !== name), resourceVersion });
    } catch (err) {
      if (classify(err).kind !== 'notFound') throw err;
    }
    return { phase: 'removed', result };
  }
  if (!finalizers.includes(name)) await steps.patch({ finalizers: [...finalizers, name], resourceVersion });
  return { phase: 'apply', result: await steps.apply() };
}
