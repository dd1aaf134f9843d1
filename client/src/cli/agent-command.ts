import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { ExitCode, SmartcopyError } from '@smartcopy/protocol';
import { Agent, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_SESSIONS } from '@smartcopy/agent';
import {
  CERT_FILE,
  DEFAULT_QUIC_PORT,
  QUIC_DEFAULT_PAYLOAD,
  QUIC_MAX_PAYLOAD,
  QUIC_MIN_PAYLOAD,
  DEFAULT_WEBTRANSPORT_PORT,
  certificateFingerprint,
  generateWebTransportCertificate,
  loadOrCreateCertificate,
  webTransportTransport,
  quicTransport,
  stdioStream,
  tcpTransport,
  type Listener,
} from '@smartcopy/transports';
import { DEFAULT_TCP_PORT } from '../config.js';
import { readToken } from './options.js';

export const AGENT_OPTIONS = {
  protocol: {
    type: 'string',
    choices: ['tcp', 'quic', 'webtransport', 'stdio'],
    default: 'tcp',
    describe: 'how clients reach the agent: tcp, quic or webtransport (listen on --bind:--port), or stdio (one session on stdin/stdout, as started by a client over SSH)',
  },
  port: {
    type: 'number',
    describe: `port to listen on (default ${DEFAULT_TCP_PORT} for tcp, ${DEFAULT_QUIC_PORT} for quic, ${DEFAULT_WEBTRANSPORT_PORT} for webtransport; 0 = any free port, the ready line tells which)`,
  },
  cert: { type: 'string', describe: `QUIC: certificate chain (PEM); default: a self-signed one made once in ~/.smartcopy/${CERT_FILE}` },
  key: { type: 'string', describe: 'QUIC: private key (PEM) of --cert' },
  'quic-payload': { type: 'number', describe: `QUIC: UDP payload bytes per datagram, ${QUIC_MIN_PAYLOAD}-${QUIC_MAX_PAYLOAD} (default ${QUIC_DEFAULT_PAYLOAD}; see README)` },
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
  port?: number;
  cert?: string;
  key?: string;
  'quic-payload'?: number;
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
const LISTEN_ONLY = ['port', 'bind', 'token-file', 'insecure', 'cert', 'key', 'quic-payload'] as const;

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

/** A WebTransport agent renews its 13-day certificate after this long. */
const WT_RENEW_MS = 12 * 24 * 3600 * 1000;
const WT_KEY_FILE = 'webtransport-key.pem';

/** The WebTransport agent's private key, made once in ~/.smartcopy (0600): clients trust it, not a certificate. */
async function loadOrCreateWebTransportKey(): Promise<string> {
  const dir = path.join(os.homedir(), '.smartcopy');
  const file = path.join(dir, WT_KEY_FILE);
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new SmartcopyError('SC_ERR_USAGE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
  const { keyPem } = await generateWebTransportCertificate();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    fs.writeFileSync(file, keyPem, { mode: 0o600, flag: 'wx' });
    return keyPem;
  } catch (e) {
    // another agent made it first: use theirs
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return fs.readFileSync(file, 'utf8');
    throw new SmartcopyError('SC_ERR_USAGE', `cannot write ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
}

/** --cert/--key: a CA-issued (or any) certificate the operator provides. */
async function readCertificate(certFile: string, keyFile: string): Promise<{ certPem: string; keyPem: string; fingerprint: string }> {
  const read = (f: string, flag: string): string => {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch (e) {
      throw new SmartcopyError('SC_ERR_USAGE', `--${flag} ${f}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
  };
  const certPem = read(certFile, 'cert');
  const keyPem = read(keyFile, 'key');
  let fingerprint: string;
  try {
    fingerprint = certificateFingerprint(certPem);
  } catch {
    throw new SmartcopyError('SC_ERR_USAGE', `--cert ${certFile} holds no PEM certificate`);
  }
  return { certPem, keyPem, fingerprint };
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
  const quic = a.protocol === 'quic';
  const wt = a.protocol === 'webtransport';
  const port = a.port ?? (quic ? DEFAULT_QUIC_PORT : wt ? DEFAULT_WEBTRANSPORT_PORT : DEFAULT_TCP_PORT);
  if (wt && (a.cert !== undefined || a.key !== undefined || a['quic-payload'] !== undefined)) {
    throw new SmartcopyError(
      'SC_ERR_USAGE',
      '--cert, --key and --quic-payload do not apply to --protocol webtransport: its agent makes a self-signed certificate and renews it every 13 days with the same key (WebTransport pins a certificate only if it lasts 14 days at most)',
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SmartcopyError('SC_ERR_USAGE', '--port must be 0-65535');
  if (!quic) {
    for (const flag of ['cert', 'key', 'quic-payload'] as const) {
      if (a[flag] !== undefined) throw new SmartcopyError('SC_ERR_USAGE', `--${flag} applies to --protocol quic only`);
    }
  }
  if ((a.cert === undefined) !== (a.key === undefined)) throw new SmartcopyError('SC_ERR_USAGE', '--cert and --key go together');
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
  let listener: Listener;
  let identity = '';
  let renewal: NodeJS.Timeout | undefined;
  if (wt) {
    const keyPem = await loadOrCreateWebTransportKey();
    let keyFingerprint = '';
    const listen = async (): Promise<Listener> => {
      const cert = await generateWebTransportCertificate({ keyPem });
      keyFingerprint = cert.publicKeyFingerprint;
      return webTransportTransport({ certPem: cert.certPem, keyPem: cert.keyPem }).listen({ host: a.bind, port: listener?.port ?? port }, (s) => agent.handleStream(s));
    };
    listener = await listen();
    identity = `, public key ${keyFingerprint}`;
    // a fresh certificate (same key, same fingerprint for clients) before the current one expires;
    // sessions already open go on, new ones meet the new certificate
    const renew = (): void => {
      renewal = setTimeout(() => {
        const old = listener;
        void old
          .close({ abortStreams: false })
          .then(listen)
          .then(
            (l) => {
              listener = l;
              log('renewed the WebTransport certificate');
              renew();
            },
            (e: unknown) => log(`cannot renew the WebTransport certificate: ${(e as Error).message}; clients will be refused once it expires — restart the agent`),
          );
      }, WT_RENEW_MS);
      renewal.unref();
    };
    renew();
  } else if (quic) {
    const cert = a.cert !== undefined ? await readCertificate(a.cert, a.key!) : await loadOrCreateCertificate();
    identity = `, certificate ${cert.fingerprint}`;
    const transport = quicTransport({ certPem: cert.certPem, keyPem: cert.keyPem, maxPayload: a['quic-payload'] });
    listener = await transport.listen({ host: a.bind, port }, (s) => agent.handleStream(s));
  } else {
    listener = await tcpTransport().listen({ host: a.bind, port }, (s) => agent.handleStream(s));
  }
  process.stdout.write(
    `smartcopy agent listening on ${listener.address} over ${quic ? 'QUIC' : wt ? 'WebTransport' : 'TCP'} (port ${listener.port}), root ${agent.jail.root}${token ? ', token required' : ''}${a['read-only'] ? ', read-only' : ''}${identity}\n`,
  );
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
  clearTimeout(renewal);
  log('stopping: discarding unfinished files');
  await listener.close({ abortStreams: false });
  await agent.close();
  await listener.close({ abortStreams: true });
  return ExitCode.OK;
}
