/**
 * How kubelet reads pull Secrets, from kubelet's own code: `controlplane/k8s/cmd/kubelet-creds`,
 * built into the control plane cache on first use. Tests compare regcred's reading with it.
 */
import { resolveKubeletCreds, streamProgress } from '../../controlplane/index.ts';
import { pipeThrough } from './processes.ts';

/** A Secret as the API carries it: `data` values in base64. */
export interface SecretInput {
  type?: string;
  data?: Record<string, string>;
}

/** One registry entry after kubelet's JSON decoding (`auth` already split into username/password). */
export interface KubeletCredential {
  username: string;
  password: string;
  email: string;
  /** The exact bytes, in base64, when the value is not valid UTF-8 (then `username` holds U+FFFD). */
  usernameBase64?: string;
  passwordBase64?: string;
}

export type KubeletReading =
  /** kubelet's keyring takes these registries from the Secret. */
  | { verdict: 'ok'; registries: Record<string, KubeletCredential> }
  /** kubelet takes nothing from the Secret: another type, or the key missing or empty. */
  | { verdict: 'ignored' }
  /** kubelet fails on the Secret (and with it, on the Pod's pull secrets); `error` is its text. */
  | { verdict: 'error'; error: string };

let binary: Promise<string> | undefined;

/** The path of kubelet-creds; the first call builds it if the cache lacks it or it is stale. */
export function kubeletCredsBinary(): Promise<string> {
  binary ??= resolveKubeletCreds({ progress: streamProgress() });
  return binary;
}

/** kubelet's reading of each input, in input order; one process for the whole batch. */
export async function kubeletReads(inputs: SecretInput[]): Promise<KubeletReading[]> {
  const path = await kubeletCredsBinary();
  const stdout = await pipeThrough(
    path,
    [],
    inputs.map((i) => `${JSON.stringify({ type: i.type, data: i.data })}\n`).join(''),
  );
  const lines = stdout.split('\n').filter((l) => l !== '');
  if (lines.length !== inputs.length) {
    throw new Error(`kubelet-creds answered ${lines.length} lines for ${inputs.length} inputs`);
  }
  return lines.map((line, i) => {
    const reading = JSON.parse(line) as KubeletReading | { verdict: 'harness-error'; error: string };
    if (reading.verdict === 'harness-error') {
      throw new Error(`kubelet-creds rejected input ${i} (${JSON.stringify(inputs[i])}): ${reading.error}`);
    }
    return reading;
  });
}
