/**
 * Command-line flags for the developer tools: `--help` (`-h`) prints the usage and exits 0; an
 * unknown flag or a flag without its value prints what was wrong and the usage, and exits 2.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O }>>['values'];

export function flags<O extends Options>(
  options: O,
  usage: string,
  args: string[] = process.argv.slice(2),
): Values<O> {
  const text = usage.endsWith('\n') ? usage : `${usage}\n`;
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } } }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${text}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(text);
    process.exit(0);
  }
  return values as Values<O>;
}
