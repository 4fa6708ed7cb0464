/**
 * Finds or builds the tools that check regcred's GitOps and monitoring integration with those
 * tools' own code, from the Go module `./gitops`, into the control plane's versioned cache
 * (`~/.cache/regcred/k8s/<kubernetes version>/bin`), on first use:
 *
 * - `kstatus`: sigs.k8s.io/cli-utils' status computation, what Flux's health checks read;
 * - `argocd-health`: an Argo CD health script run under gopher-lua with Argo CD's library set;
 * - `promtool`: Prometheus' own, for `check rules` and `test rules`;
 * - `promql-selectors`: the series a PromQL expression reads, from Prometheus' parser.
 *
 * Versions are pinned by `gitops/go.mod`; the build follows the control plane's rules
 * (fingerprints of go.mod, go.sum, the commands' sources and the `internal` package they share,
 * progress, build lock).
 *
 * Errors: a failed build throws a `ControlPlaneError` naming the cause and the log to read.
 */
import { dirname, join } from 'node:path';
import { type Component, ensureBuilt, GO_MODULE_DIR, type ResolveOptions } from './binaries.ts';

export const GITOPS_MODULE_DIR = join(dirname(GO_MODULE_DIR), 'gitops');

const own = (name: string): Component => ({
  name,
  pkg: `./cmd/${name}`,
  source: [`cmd/${name}`, 'internal'],
  moduleDir: GITOPS_MODULE_DIR,
  kubernetesLdflags: false,
});

export const GITOPS_COMPONENTS: readonly Component[] = [
  own('kstatus'),
  own('argocd-health'),
  own('promql-selectors'),
  {
    name: 'promtool',
    pkg: 'github.com/prometheus/prometheus/cmd/promtool',
    moduleDir: GITOPS_MODULE_DIR,
    // Without the service discovery plugins promtool needs none of the cloud SDKs.
    tags: ['remove_all_sd'],
    kubernetesLdflags: false,
  },
];

export interface GitOpsTools {
  kstatus: string;
  argocdHealth: string;
  promtool: string;
  promqlSelectors: string;
}

/** The tools' paths, building those missing or stale. */
export async function resolveGitOpsTools(options: ResolveOptions): Promise<GitOpsTools> {
  const binDir = await ensureBuilt(GITOPS_COMPONENTS, options);
  return {
    kstatus: join(binDir, 'kstatus'),
    argocdHealth: join(binDir, 'argocd-health'),
    promtool: join(binDir, 'promtool'),
    promqlSelectors: join(binDir, 'promql-selectors'),
  };
}
