/**
 * `npm run image -- [options]`: builds regcred's image from the Dockerfile with buildah (no Docker
 * engine; see controlplane/image.ts), and pushes it when asked.
 *
 *   --push REGISTRY   push to REGISTRY/regcred:TAG (e.g. ghcr.io/acme); credentials from
 *                     REGISTRY_AUTH_FILE or ~/.docker/config.json, as `docker login` writes them
 *   --tag TAG         the tag (default: package.json's version)
 *   --local-base      build on the local stand-in for node:24-bookworm-slim, pulling nothing
 *                     (for machines that reach no public image registry)
 *   --cert-dir DIR    CA certificates (*.crt) of a registry with a private certificate
 *
 * Prints the image's ID and size, and the pushed reference with its digest.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Buildah } from '../controlplane/image.ts';
import { ControlPlaneError, streamProgress } from '../controlplane/index.ts';

export interface ImageOptions {
  push?: string;
  tag: string;
  localBase: boolean;
  certDir?: string;
  help: boolean;
}

const USAGE = `usage: npm run image -- [--push REGISTRY] [--tag TAG] [--local-base] [--cert-dir DIR]\n`;

/** Parses the command line (`--flag value` or `--flag=value`); pure, for tests. */
export function parseImageArgs(argv: string[], defaultTag: string): ImageOptions {
  const options: ImageOptions = { tag: defaultTag, localBase: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (!v || v.startsWith('--')) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--push') options.push = value().replace(/\/+$/, '');
    else if (flag === '--tag') options.tag = value();
    else if (flag === '--cert-dir') options.certDir = value();
    else if (flag === '--local-base' && inline === undefined) options.localBase = true;
    else if (flag === '--help' || flag === '-h') options.help = true;
    else throw new Error(`unknown option ${argv[i]}`);
  }
  return options;
}

if (import.meta.main) {
  const version = (
    JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as {
      version: string;
    }
  ).version;
  let options: ImageOptions;
  try {
    options = parseImageArgs(process.argv.slice(2), version);
  } catch (err) {
    process.stderr.write(`image: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (options.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const progress = streamProgress(process.stderr, '[image] ');
  try {
    const buildah = await Buildah.resolve(progress);
    const built = await buildah.build({ tag: options.tag, localBase: options.localBase, progress });
    const mb = ((await buildah.size(built.ref)) / 1e6).toFixed(0);
    process.stdout.write(`built ${built.ref} (${built.id.slice(0, 12)}, ${mb} MB)\n`);
    if (options.push) {
      const destination = `${options.push}/regcred:${options.tag}`;
      const digest = await buildah.push(built.ref, destination, { certDir: options.certDir });
      process.stdout.write(`pushed ${destination}@${digest}\n`);
    }
  } catch (err) {
    if (!(err instanceof ControlPlaneError)) throw err;
    process.stderr.write(`image: ${err.message}\n`);
    process.exit(1);
  }
}
