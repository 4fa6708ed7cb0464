/**
 * Progress output for slow steps (the first build, a control plane start). On a terminal the status
 * line is rewritten in place; elsewhere (CI logs) a status is printed at most every 15 s, so a long
 * build shows that it moves without flooding the log.
 */
export interface Progress {
  /** A line that stays. */
  note(message: string): void;
  /** A transient status line, replaced by the next status or note. */
  status(message: string): void;
  /** Ends a sequence of statuses with a line that stays. */
  done(message: string): void;
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

export function streamProgress(
  stream: NodeJS.WriteStream = process.stderr,
  prefix = '[controlplane] ',
): Progress {
  const interactive = stream.isTTY === true;
  let lastStatusAt = 0;
  let statusShown = false;
  const clear = () => {
    if (interactive && statusShown) stream.write('\r\x1b[2K');
    statusShown = false;
  };
  return {
    note(message) {
      clear();
      stream.write(`${prefix}${message}\n`);
    },
    status(message) {
      if (interactive) {
        clear();
        stream.write(`${prefix}${message}`);
        statusShown = true;
      } else if (Date.now() - lastStatusAt >= 15_000) {
        stream.write(`${prefix}${message}\n`);
        lastStatusAt = Date.now();
      }
    },
    done(message) {
      clear();
      lastStatusAt = 0;
      stream.write(`${prefix}${message}\n`);
    },
  };
}

/** Discards everything; for callers that want silence. */
export const silentProgress: Progress = { note() {}, status() {}, done() {} };
