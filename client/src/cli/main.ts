import yargs from 'yargs';
import { ExitCode, SOFTWARE_VERSION, SmartcopyError } from '@smartcopy/protocol';
import { runCopy } from '../run.js';
import { COPY_OPTIONS, resolveConfig, type ParsedCopyArgs } from './options.js';
import { AGENT_OPTIONS, runAgentCommand, type ParsedAgentArgs } from './agent-command.js';

const EPILOG = 'Exit codes: 0 ok, 1 usage, 2 protocol version, 3 source/destination selection, 5 auth/refused, 10 connection, 11 file I/O, 12 protocol, 20 interrupted, 23 partial transfer, 24 vanished source files, 30 timeout. See README.md.';

function usageError(msg: string): never {
  throw new SmartcopyError('SC_ERR_USAGE', msg);
}

/**
 * Entry point of the `smartcopy` binary. Parses the command line into a frozen Config and hands
 * it over; returns the process exit code. Ctrl-C aborts the run (exit code 20); a second Ctrl-C
 * exits at once.
 */
export async function main(argv: string[]): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts > 1) process.exit(ExitCode.INTERRUPTED);
    controller.abort(new SmartcopyError('SC_ERR_INTERRUPTED', `interrupted (${sig})`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let result: Promise<number> | undefined;
    const parser = yargs(argv)
      .scriptName('smartcopy')
      .usage('$0 SRC DST [DST...] [options]\n\nCopy SRC to DST. A directory SRC makes DST a mirror of its contents.\nSRC or DST may be a local path, host:PORT:/path or tcp://host:PORT/path (a TCP agent),\n[user@]host:/path with --ssh, or ssh://[user@]host[:port]/path. Several DSTs: fan-out.')
      .command<ParsedCopyArgs>(
        '$0 <source> [destinations..]',
        'copy SRC to DST (several DSTs: fan-out, the source is read once for all)',
        (y) => y.positional('source', { type: 'string' }).positional('destinations', { type: 'string', array: true }).options(COPY_OPTIONS),
        (a) => {
          const cfg = resolveConfig(a, argv);
          result = runCopy(cfg, { stdout: process.stdout, stderr: process.stderr }, controller.signal);
        },
      )
      .command<ParsedAgentArgs>(
        ['agent', 'server'],
        'serve a directory to smartcopy clients (TCP, or stdio under SSH)',
        (y) => y.options(AGENT_OPTIONS),
        (a) => {
          result = runAgentCommand(a, controller.signal, argv);
        },
      )
      .command<ParsedAgentArgs>(
        'quic-server',
        'serve a directory to smartcopy clients over QUIC (the same as agent --protocol quic)',
        (y) => y.options({ ...AGENT_OPTIONS, protocol: { ...AGENT_OPTIONS.protocol, choices: ['quic'], default: 'quic' } }),
        (a) => {
          result = runAgentCommand({ ...a, protocol: 'quic' }, controller.signal, argv);
        },
      )
      .strict()
      .help()
      .alias('h', 'help')
      .version(SOFTWARE_VERSION)
      .wrap(Math.min(110, process.stdout.columns || 100))
      .epilog(EPILOG)
      .fail((msg, err) => {
        if (err) throw err;
        usageError(msg);
      });
    await parser.parseAsync();
    return result ? await result : ExitCode.OK;
  } catch (e) {
    const err = e instanceof SmartcopyError ? e : new SmartcopyError('SC_ERR_INTERNAL', String((e as Error)?.stack ?? e));
    process.stderr.write(`smartcopy: ${err.message}${err.code === 'SC_ERR_USAGE' ? ' (see smartcopy --help)' : ''}\n`);
    return err.exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
