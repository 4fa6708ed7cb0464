export { type Binaries, kubernetesVersion, resolveBinaries, resolveKubeletCreds } from './binaries.ts';
export { type ClientConfig, ControlPlane, type StartOptions } from './controlplane.ts';
export { ControlPlaneError } from './errors.ts';
export { stopOnInterrupt } from './interrupt.ts';
export { KUBECTL_IMAGE, NODE_NAME, type Node, PAUSE_IMAGE } from './node.ts';
export { resolveNodeBinaries } from './nodebinaries.ts';
export { HOST_STATE_DIR, machineSnapshot, nodePreflight } from './nodehost.ts';
export { type Progress, silentProgress, streamProgress } from './progress.ts';
export type { Pull, Registry } from './registry.ts';
