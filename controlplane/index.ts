export { type Binaries, kubernetesVersion, resolveBinaries, resolveKubeletCreds } from './binaries.ts';
export { type ClientConfig, ControlPlane, type StartOptions } from './controlplane.ts';
export { ControlPlaneError } from './errors.ts';
export { stopOnInterrupt } from './interrupt.ts';
export { type Progress, silentProgress, streamProgress } from './progress.ts';
