import fs from 'node:fs';
import net from 'node:net';
import { ExitCode, SmartcopyError } from '@smartcopy/protocol';
import { Agent, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_SESSIONS } from '@smartcopy/agent';
import { stdioStream, tcpTransport } from '@smartcopy/transports';
import { DEFAULT_TCP_PORT } from '../config.js';
import { readToken } from './options.js';

export const AGENT_OPTIONS = {
  protocol: { type: 'string', choices: ['tcp', 'stdio'], default: 'tcp', describe: 'how clients reach the agent: tcp (listen on --bind:--port) or stdio (one session on stdin/stdout, as started by a client over SSH)' },
  port: { type: 'number', default: DEFAULT_TCP_PORT, describe: 'TCP port (0 = any free port; the ready line tells which)' },
  bind: { type: 'string', default: '127.0.0.1', describe: 'address to listen on' },
  root: { type: 'string', demandOption: true, describe: 'directory served; client paths are inside it' },
  'token-file': { type: 'string', describe: 'file holding the shared token clients must prove (or SMARTCOPY_TOKEN)' },
  'read-only': { type: 'boolean', describe: 'serve reads (pull) only; refuse every write' },
  'max-sessions': { type: 'number', default: DEFAULT_MAX_SESSIONS, describe: 'concurrent sessions; more are refused as busy' },
  'idle-timeout': { type: 'number', default: DEFAULT_IDLE_TIMEOUT_MS / 1000, describe: 'seconds a connection may stay silent' },
  insecure: { type: 'boolean', describe: 'allow listening on a non-loopback address without a token' },
} as const;

export interface ParsedAgentArgs {
  protocol: string;
  port: number;
  bind: string;
  root: string;
  'token-file'?: string;
  'read-only'?: boolean;
  'max-sessions': number;
  'idle-timeout': number;
  insecure?: boolean;
}

function isLoopback(addr: string): boolean {
  if (addr === 'localhost') return true;
  if (net.isIPv4(addr)) return addr.startsWith('127.');
  return addr === '::1';
}

/** Flags that only mean something to a listening agent. */
const LISTEN_ONLY = ['port', 'bind', 'token-file', 'insecure'] as const;

/**
 * `smartcopy agent --protocol stdio`: serve one client on stdin/stdout (started by the client
 * through SSH, which already authenticated the user: no token). stdout carries frames only;
 * messages go to stderr, which the client relays. Ends when the client closes the channel.
 */
async function runStdioAgent(a: ParsedAgentArgs, argv: readonly string[], signal: AbortSignal): Promise<number> {
  for (const flag of LISTEN_ONLY) {
    if (argv.some((x) => x === `--${flag}` || x.startsWith(`--${flag}=`))) {
      throw new SmartcopyError('SC_ERR_USAGE', `--${flag} does not apply to --protocol stdio (the SSH login is the authentication)`);
    }
  }
  const st = fs.statSync(a.root, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw new SmartcopyError('SC_ERR_USAGE', `--root ${a.root} is not an existing directory`);
  const agent = await Agent.open({
    root: a.root,
    readOnly: a['read-only'] ?? false,
    maxSessions: a['max-sessions'],
    idleTimeoutMs: a['idle-timeout'] * 1000,
    log: (line) => process.stderr.write(`smartcopy agent: ${line}\n`),
  });
  const stream = stdioStream();
  agent.handleStream(stream);
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
    void stream.closed.then(() => resolve());
  });
  // a killed client leaves parts of unfinished files: the agent removes them on close
  await agent.close();
  stream.abort();
  return ExitCode.OK;
}

/** `smartcopy agent`: serve --root until SIGTERM/SIGINT. */
export async function runAgentCommand(a: ParsedAgentArgs, signal: AbortSignal, argv: readonly string[] = []): Promise<number> {
  if (a.protocol === 'stdio') return runStdioAgent(a, argv, signal);
  const token = readToken(a['token-file']);
  if (!token && !isLoopback(a.bind) && !a.insecure) {
    throw new SmartcopyError(
      'SC_ERR_USAGE',
      `refusing to listen on ${a.bind} without a token: anyone who can reach it could read and write ${a.root}. Pass --token-file FILE (or set SMARTCOPY_TOKEN), or --insecure on a trusted network`,
    );
  }
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new SmartcopyError('SC_ERR_USAGE', '--port must be 0-65535');
  if (!Number.isInteger(a['max-sessions']) || a['max-sessions'] < 1) throw new SmartcopyError('SC_ERR_USAGE', '--max-sessions must be at least 1');
  const st = fs.statSync(a.root, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw new SmartcopyError('SC_ERR_USAGE', `--root ${a.root} is not an existing directory`);
  const log = (line: string): void => {
    process.stderr.write(`smartcopy agent: ${line}\n`);
  };
  const agent = await Agent.open({
    root: a.root,
    readOnly: a['read-only'] ?? false,
    token,
    maxSessions: a['max-sessions'],
    idleTimeoutMs: a['idle-timeout'] * 1000,
    log,
  });
  const listener = await tcpTransport().listen({ host: a.bind, port: a.port }, (s) => agent.handleStream(s));
  process.stdout.write(
    `smartcopy agent listening on ${listener.address} (port ${listener.port}), root ${agent.jail.root}${token ? ', token required' : ''}${a['read-only'] ? ', read-only' : ''}\n`,
  );
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
  log('stopping: discarding unfinished files');
  await listener.close({ abortStreams: false });
  await agent.close();
  await listener.close({ abortStreams: true });
  return ExitCode.OK;
}
