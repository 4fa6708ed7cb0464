/** A regcred process restarted whenever it exits, as a Deployment's kubelet restarts its container. */
import { killQuietly, type RegcredProcess } from './processes.ts';

export class Supervised {
  current: RegcredProcess;
  /** Every process started so far, the current one last. */
  readonly generations: RegcredProcess[] = [];
  restarts = 0;
  private stopping = false;
  private readonly start: () => RegcredProcess;

  /** `start` spawns one process; it is called again 500 ms after each exit until `stop()`. */
  constructor(start: () => RegcredProcess) {
    this.start = start;
    this.current = this.watch(start());
  }

  private watch(p: RegcredProcess): RegcredProcess {
    this.generations.push(p);
    void p.exited.then(() => {
      if (this.stopping || this.current !== p) return;
      this.restarts++;
      setTimeout(() => {
        if (!this.stopping) this.current = this.watch(this.start());
      }, 500);
    });
    return p;
  }

  /** Stops supervising and kills the current process. */
  async stop(): Promise<void> {
    this.stopping = true;
    await killQuietly(this.current);
  }
}
