/**
 * What regcred learns while reconciling that its caches cannot show, per RegistryCredential.
 *
 * Contract:
 * - Entries are kept by credential name and belong to one UID: a credential deleted and created
 *   again under the same name starts with an empty book.
 * - A namespace's result is recorded with the basis it was computed on (the spec's generation and
 *   the source's version); status counts a result on another basis as pending, so after a spec
 *   change or a rotation it waits for each namespace to be done again.
 * - `record` says whether anything status shows changed, so the caller asks for a status write
 *   only then.
 * - Nothing here is a credential: foreign Secrets are kept without their data.
 */
import type { RegistryCredential } from '../api/v1alpha1.ts';
import type { Compiled } from './namespace-plan.ts';
import type { Secret } from './objects.ts';
import { compileSelection } from './plan.ts';
import type { SourceState } from './sources.ts';
import type { NamespaceResult } from './status.ts';

interface Recorded {
  result: NamespaceResult;
  basis: string;
}

interface Book {
  uid: string;
  results: Map<string, Recorded>;
  /** Copies got a changed credential since the last status write. */
  rotated: boolean;
  /** This process has written or confirmed the credential's status. */
  statusSeen: boolean;
  /** Namespace reconciles running now. */
  inFlight: number;
  /** Per namespace: a Secret at the copy's name that is not regcred's and not labelled. */
  foreign: Map<string, Secret>;
  selection?: { generation: number; compiled: Compiled };
}

export class Bookkeeping {
  private readonly books = new Map<string, Book>();

  private bookOf(rc: RegistryCredential): Book {
    const name = rc.metadata.name;
    let book = this.books.get(name);
    if (!book || book.uid !== rc.metadata.uid) {
      book = {
        uid: rc.metadata.uid,
        results: new Map(),
        rotated: false,
        statusSeen: false,
        inFlight: 0,
        foreign: new Map(),
      };
      this.books.set(name, book);
    }
    return book;
  }

  /** The credential's compiled selection, memoised per generation. */
  selectionOf(rc: RegistryCredential): Compiled {
    const book = this.bookOf(rc);
    const generation = rc.metadata.generation ?? 0;
    if (book.selection?.generation !== generation)
      book.selection = { generation, compiled: compileSelection(rc) };
    return book.selection.compiled;
  }

  /** Records (or, with `undefined`, clears) a namespace's result; true when status should be written. */
  record(rc: RegistryCredential, namespace: string, entry: Recorded | undefined): boolean {
    const results = this.bookOf(rc).results;
    const before = results.get(namespace);
    if (entry === undefined) return results.delete(namespace);
    results.set(namespace, entry);
    return !(before && before.basis === entry.basis && sameResult(before.result, entry.result));
  }

  resultOf(rc: RegistryCredential, namespace: string): Recorded | undefined {
    return this.bookOf(rc).results.get(namespace);
  }

  markRotated(rc: RegistryCredential, rotated = true): void {
    this.bookOf(rc).rotated = rotated;
  }

  rotated(rc: RegistryCredential): boolean {
    return this.bookOf(rc).rotated;
  }

  markStatusSeen(rc: RegistryCredential): void {
    this.bookOf(rc).statusSeen = true;
  }

  statusSeen(rc: RegistryCredential): boolean {
    return this.bookOf(rc).statusSeen;
  }

  begin(rc: RegistryCredential): void {
    this.bookOf(rc).inFlight++;
  }

  end(rc: RegistryCredential): void {
    this.bookOf(rc).inFlight--;
  }

  inFlight(rc: RegistryCredential): number {
    return this.bookOf(rc).inFlight;
  }

  foreign(rc: RegistryCredential, namespace: string): Secret | undefined {
    return this.bookOf(rc).foreign.get(namespace);
  }

  remember(rc: RegistryCredential, namespace: string, secret: Secret | undefined): void {
    if (secret) this.bookOf(rc).foreign.set(namespace, { ...secret, data: undefined });
    else this.bookOf(rc).foreign.delete(namespace);
  }

  /** Forgets a credential that no longer exists. */
  forget(name: string): void {
    this.books.delete(name);
  }
}

/** What a namespace result depends on: the spec's generation and the source's version. */
export function basisOf(rc: RegistryCredential, source: SourceState): string {
  return `${rc.metadata.generation ?? 0}/${source.valid ? source.resourceVersion : `-${source.reason}`}`;
}

function sameResult(a: NamespaceResult, b: NamespaceResult): boolean {
  return (
    a.state === b.state &&
    a.patched === b.patched &&
    (a as { reason?: string }).reason === (b as { reason?: string }).reason &&
    (a as { message?: string }).message === (b as { message?: string }).message
  );
}
