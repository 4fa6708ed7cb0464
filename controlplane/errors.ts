/** An error a user can act on: the message names the cause and, where there is one, the log to read. */
export class ControlPlaneError extends Error {
  override name = 'ControlPlaneError';
}
