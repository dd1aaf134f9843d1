import { ExitCode, SmartcopyError, fromSystemError } from '@smartcopy/protocol';
import { DEFAULT_REMOTE_CMD, type Config } from './config.js';
import { explainRemoteFailure, type RemoteDeps } from './endpoints.js';
import { Accounting, summaryOf, type RunEvents } from './progress/accounting.js';
import { HumanRenderer, JsonRenderer } from './progress/render.js';
import { parseTarget, type Target } from './targets.js';
import { pull } from './transfer/pull.js';
import { push } from './transfer/push.js';
import { sftpCopy } from './transfer/sftp/index.js';
import { fanout } from './fanout/index.js';

export interface RunIO {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

/** What a run may share with other runs in the same process. */
export interface RunDeps extends RemoteDeps {
  /** where events go instead of the terminal renderers (library API) */
  events?: (acct: Accounting) => RunEvents;
}

const targetOpts = (cfg: Config) => ({ tcpAgent: cfg.tcpAgent, ssh: cfg.ssh, webtransport: cfg.webtransport });

/** SSH flags make sense only with an SSH operand; one given without is a mistake, not a no-op. */
function checkTransportOptions(cfg: Config, targets: readonly Target[]): void {
  const quic = targets.some((t) => t.kind === 'quic');
  if (!quic && cfg.quicPayload !== undefined) throw new SmartcopyError('SC_ERR_USAGE', '--quic-payload only applies to quic:// targets');
  if (!quic && !targets.some((t) => t.kind === 'webtransport') && cfg.quicFingerprint !== undefined) {
    throw new SmartcopyError('SC_ERR_USAGE', '--quic-fingerprint only applies to quic:// and wt:// targets');
  }
  if (cfg.webtransport && !targets.some((t) => t.kind === 'webtransport')) {
    throw new SmartcopyError('SC_ERR_USAGE', '--webtransport makes https://host/path operands WebTransport agents, and there is none');
  }
  const ssh = targets.some((t) => t.kind === 'ssh');
  if (!ssh) {
    const given = [
      cfg.useAgent && '--use-agent',
      cfg.remoteCmd !== DEFAULT_REMOTE_CMD && '--remote-cmd',
      cfg.sshConfig !== undefined && '--ssh-config',
      cfg.sshKeys.length > 0 && '--ssh-key',
      cfg.sshPort !== undefined && '--ssh-port',
      cfg.sshCipher !== undefined && '--ssh-cipher',
      cfg.acceptNewHostKey && '--accept-new-host-key',
    ].filter((x): x is string => typeof x === 'string');
    if (given.length > 0) {
      throw new SmartcopyError('SC_ERR_USAGE', `${given.join(', ')} only apply to SSH transfers; neither SRC nor DST is an SSH target (add --ssh for user@host:/path, or write ssh://user@host/path)`);
    }
    return;
  }
  if (cfg.tokenFile !== undefined) throw new SmartcopyError('SC_ERR_USAGE', '--token-file is for TCP agents; over SSH the SSH login authenticates you');
  if (!cfg.useAgent && cfg.remoteCmd !== DEFAULT_REMOTE_CMD) throw new SmartcopyError('SC_ERR_USAGE', '--remote-cmd only applies with --use-agent');
}

/** How a finished run maps to a process exit code (see README "Exit codes"). */
export function exitCodeOf(acct: Accounting, fatal: SmartcopyError | undefined, interrupted: boolean): number {
  if (interrupted) return ExitCode.INTERRUPTED;
  if (fatal) return fatal.exitCode;
  if (acct.filesFailed > 0 || acct.errors.length > 0) {
    const all = acct.errors;
    return all.length > 0 && all.every((e) => e.code === 'SC_ERR_VANISHED') ? ExitCode.VANISHED : ExitCode.PARTIAL;
  }
  return ExitCode.OK;
}

function makeEvents(cfg: Config, acct: Accounting, io: RunIO): RunEvents {
  if (cfg.json) return new JsonRenderer(acct, io.stdout);
  return new HumanRenderer(acct, {
    progress: cfg.progress || (io.stderr.isTTY === true && !cfg.quiet),
    verbose: cfg.verbose,
    quiet: cfg.quiet,
    out: io.stdout,
    err: io.stderr,
  });
}

/** `smartcopy SRC DST1 DST2 ...`: one source pushed to every destination (see fanout/). */
async function runFanout(cfg: Config, io: RunIO, signal: AbortSignal, deps: RunDeps): Promise<number> {
  let src: Target;
  let dests: Target[];
  try {
    src = parseTarget(cfg.source, targetOpts(cfg));
    dests = cfg.destinations.map((d) => parseTarget(d, targetOpts(cfg)));
    if (src.kind !== 'local') throw new SmartcopyError('SC_ERR_USAGE', 'fan-out pushes a local source to several destinations; SRC must be a local path');
    checkTransportOptions(cfg, [src, ...dests]);
    if (dests.some((d) => d.kind === 'ssh') && !cfg.useAgent) {
      throw new SmartcopyError('SC_ERR_USAGE', 'fan-out to SSH destinations needs --use-agent (each node reads the shared source blocks through an agent session; SFTP mode is for single copies)');
    }
  } catch (e) {
    const err = e instanceof SmartcopyError ? e : fromSystemError(e, 'smartcopy');
    io.stderr.write(`smartcopy: ${err.message}\n`);
    return err.exitCode;
  }
  // fanout() names the node in each remote message itself
  return fanout(cfg, src, dests, io, signal, deps);
}

/** Run one `smartcopy SRC DST`. Never throws: every failure becomes an exit code and a message. */
export async function runCopy(cfg: Config, io: RunIO, signal: AbortSignal, deps: RunDeps = {}): Promise<number> {
  if (cfg.destinations.length > 1) return runFanout(cfg, io, signal, deps);
  const acct = new Accounting();
  const events = deps.events ? deps.events(acct) : makeEvents(cfg, acct, io);
  const ticker = setInterval(() => events.tick(), 250);
  ticker.unref();
  let fatal: SmartcopyError | undefined;
  try {
    const src = parseTarget(cfg.source, targetOpts(cfg));
    const dst = parseTarget(cfg.destination, targetOpts(cfg));
    if (src.kind !== 'local' && dst.kind !== 'local') {
      throw new SmartcopyError('SC_ERR_USAGE', 'both SRC and DST are remote; one of them must be a local path');
    }
    if (src.kind === 'local' && dst.kind === 'local' && cfg.compress) {
      throw new SmartcopyError('SC_ERR_USAGE', '--compress only applies to transfers to or from an agent; local copies do not cross a wire');
    }
    checkTransportOptions(cfg, [src, dst]);
    const runDeps: RunDeps = { ...deps, notice: deps.notice ?? ((line) => io.stderr.write(`smartcopy: ${line}\n`)) };
    if ((src.kind === 'ssh' || dst.kind === 'ssh') && !cfg.useAgent) await sftpCopy(cfg, src, dst, acct, events, signal, runDeps);
    else if (src.kind === 'local') await push(cfg, src, dst, acct, events, signal, runDeps);
    else await pull(cfg, src, dst as Extract<Target, { kind: 'local' }>, acct, events, signal, runDeps);
  } catch (e0) {
    const e = explainRemoteFailure(e0);
    fatal = e instanceof SmartcopyError ? e : fromSystemError(e, 'smartcopy');
    if (signal.aborted) fatal = new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted');
    events.error(fatal);
  } finally {
    clearInterval(ticker);
  }
  const interrupted = signal.aborted;
  if (interrupted && !fatal) events.error(new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted; files not yet complete were not put in place (see README: interrupted runs)'));
  const code = exitCodeOf(acct, fatal, interrupted);
  events.summary(summaryOf(acct, code, cfg.dryRun, fatal));
  return code;
}

