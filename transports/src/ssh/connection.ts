import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { ClientChannel, ConnectConfig, NegotiatedAlgorithms, SFTPWrapper } from 'ssh2';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { AbstractConnection, abortReason } from '../abstract-connection.js';
import { connectSocket, formatHostPort } from '../tcp/connect.js';
import { CONNECT_TIMEOUT_MS } from '../types.js';
import type { Stream, TransportFeatures } from '../types.js';
import { describeStreamError } from '../stdio/pipe-stream.js';
import { AuthPlan } from './auth.js';
import type { AskPassphrase } from './auth.js';
import { DEFAULT_SSH_CIPHERS, resolveSshHost, SSH_CIPHERS } from './config.js';
import type { ResolvedSshHost, SshCipher, SshHop, SshResolveOptions } from './config.js';
import { SshExecStream } from './exec-stream.js';
import { HostKeyError, hostKeyAlgorithms, keyTypeLabel, knownHostsName, knownKeyTypes, verifyHostKey, keyType } from './known-hosts.js';
import { hasTty, promptOnTty } from './passphrase.js';

const { Client } = ssh2;
type SshClient = InstanceType<typeof Client>;

export const SSH_FEATURES: TransportFeatures = Object.freeze({ sameHost: false, multiplexed: true, encrypted: true });
/** Keepalive when the config sets no ServerAliveInterval: a dead peer is noticed within ~45 s. */
export const SSH_KEEPALIVE_INTERVAL_MS = 15_000;
export const SSH_KEEPALIVE_COUNT_MAX = 3;
/** ProxyJump hops (each may bring its own ProxyJump from the config) before we call it a loop. */
export const MAX_PROXY_JUMP_DEPTH = 8;
/** ssh2's host key algorithms, in its preference order (after the types known_hosts has for the host). */
const DEFAULT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

export interface SshOptions extends Omit<SshResolveOptions, 'user'> {
  /** the ssh-agent socket (default SSH_AUTH_SOCK; "" for none) */
  agentSocket?: string;
  /** --accept-new-host-key: record the key of an unknown host (a changed key is always refused) */
  acceptNewHostKey?: boolean;
  /** like BatchMode=yes: never prompt */
  batchMode?: boolean;
  /** how to ask for a key's passphrase (default: on the terminal; false: never ask) */
  askPassphrase?: AskPassphrase | false;
  /** force one cipher (--ssh-cipher) */
  cipher?: SshCipher;
  /** connect + handshake timeout in ms (default: ConnectTimeout, else 10 s) */
  timeoutMs?: number;
  /** SSH keepalive interval in ms (default: ServerAliveInterval, else 15 s; 0 disables) */
  keepaliveIntervalMs?: number;
  /** the command openStream() runs (`smartcopy agent --protocol stdio --root /`) */
  remoteCommand?: string;
  /** messages ssh prints on the terminal ("Permanently added ... to the list of known hosts") */
  onWarning?: (line: string) => void;
  /** stderr lines of exec channels that were not given their own onStderr */
  onStderr?: (line: string) => void;
  signal?: AbortSignal;
  /** ssh2's protocol debug output */
  debug?: (line: string) => void;
  /** stream buffering (see AbstractStreamInit) */
  highWaterMark?: number;
  maxBuffered?: number;
}

export interface SshTarget {
  host: string;
  user?: string;
  port?: number;
}

export interface ExecOptions {
  /** each line the command writes to stderr */
  onStderr?(line: string): void;
  /** aborts the channel (while opening, and the stream afterwards) */
  signal?: AbortSignal;
}

interface ExecRequest extends ExecOptions {
  command?: string;
}

/** A countdown that stops while a human types a passphrase. */
class Deadline {
  #timer: NodeJS.Timeout | undefined;
  #left: number;
  #since = 0;
  readonly #fire: () => void;

  constructor(ms: number, fire: () => void) {
    this.#left = ms;
    this.#fire = fire;
    this.resume();
  }

  pause(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#left -= Date.now() - this.#since;
  }

  resume(): void {
    if (this.#timer !== undefined) return;
    this.#since = Date.now();
    this.#timer = setTimeout(this.#fire, Math.max(0, this.#left));
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#left = Infinity;
  }
}

function where(h: ResolvedSshHost): string {
  return formatHostPort(h.hostName, h.port);
}

/** ssh2's errors before 'ready' as one-line SmartcopyErrors. */
function handshakeError(h: ResolvedSshHost, err: Error & { level?: string; code?: unknown }): SmartcopyError {
  if (err instanceof SmartcopyError) return err;
  const at = `${h.user}@${h.alias}`;
  const msg = err.message;
  if (/no matching .*cipher/i.test(msg)) {
    return new SmartcopyError('SC_ERR_CONNECT', `${at}: no cipher in common with the server (${msg}); pick another with --ssh-cipher or Ciphers in the SSH config`, { cause: err });
  }
  if (/no matching/i.test(msg)) {
    return new SmartcopyError('SC_ERR_CONNECT', `${at}: cannot agree on SSH algorithms with the server (${msg})`, { cause: err });
  }
  if (/Connection lost before handshake/i.test(msg)) {
    return new SmartcopyError(
      'SC_ERR_CONNECT',
      `${at}: ${where(h)} closed the connection before the SSH handshake — is it an SSH server, and does it accept us (MaxStartups, firewall)?`,
      { cause: err, retryable: true },
    );
  }
  if (err.level === 'client-socket') {
    return new ConnectionClosedError(`${at}: the connection to ${where(h)} broke during the SSH handshake: ${describeStreamError(err)}`, { cause: err });
  }
  if (typeof err.code === 'number') {
    return new SmartcopyError('SC_ERR_CONNECT', `${at}: the server closed the connection: ${msg}`, { cause: err, retryable: true });
  }
  return new SmartcopyError('SC_ERR_CONNECT', `${at}: SSH handshake with ${where(h)} failed: ${msg}`, { cause: err, retryable: true });
}

/** What the SSH handshake settled on. */
export interface SshAlgorithms {
  readonly kex: string;
  readonly hostKey: string;
  /** client-to-server cipher (the server-to-client one is the same unless the server insists) */
  readonly cipher: string;
}

/** A connected, authenticated ssh2 client, and the jump-host clients it runs over (outermost first). */
interface OpenedClient {
  client: SshClient;
  algorithms: SshAlgorithms;
  hops: SshClient[];
}

function formatHop(h: SshHop): string {
  return `${h.user ? `${h.user}@` : ''}${h.host.includes(':') ? `[${h.host}]` : h.host}${h.port ? `:${h.port}` : ''}`;
}

/** A direct-tcpip channel through `via` to host:port, to run the next SSH connection over. */
function forwardOut(via: SshClient, viaHost: ResolvedSshHost, to: ResolvedSshHost): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    via.forwardOut('127.0.0.1', 0, to.hostName, to.port, (err, channel) => {
      if (err) {
        const reason = err.message.replace(/^\(SSH\) Channel open failure: /, '');
        reject(
          new SmartcopyError('SC_ERR_CONNECT', `jump host ${viaHost.user}@${viaHost.alias} cannot reach ${where(to)}: ${reason}`, {
            cause: err,
            retryable: true,
          }),
        );
      } else resolve(channel);
    });
  });
}

function hopOptions(opts: SshOptions): SshOptions {
  // a jump host is its own ssh invocation in OpenSSH: -i, -p, the cipher and the command are the target's
  const { identityFiles: _i, port: _p, cipher: _c, remoteCommand: _r, proxyJump: _j, ...rest } = opts;
  return rest;
}

async function openClient(h: ResolvedSshHost, opts: SshOptions, depth: number): Promise<OpenedClient> {
  const signal = opts.signal;
  const timeoutMs = opts.timeoutMs ?? h.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  let hops: SshClient[] = [];
  let sock: Duplex;
  if (h.proxyJump.length > 0) {
    if (depth >= MAX_PROXY_JUMP_DEPTH) {
      throw new SmartcopyError('SC_ERR_USAGE', `ProxyJump for ${h.alias} goes through more than ${MAX_PROXY_JUMP_DEPTH} hops: is there a loop in the SSH config?`);
    }
    const last = h.proxyJump[h.proxyJump.length - 1]!;
    const before = h.proxyJump.slice(0, -1);
    const hopOpts = hopOptions(opts);
    const jumpHost = resolveSshHost(last.host, {
      ...hopOpts,
      user: last.user,
      port: last.port,
      ...(before.length > 0 ? { proxyJump: before.map(formatHop).join(',') } : {}),
    });
    const jump = await openClient(jumpHost, hopOpts, depth + 1);
    try {
      sock = await forwardOut(jump.client, jumpHost, h);
    } catch (err) {
      jump.client.destroy();
      for (const c of jump.hops) c.destroy();
      throw err;
    }
    hops = [...jump.hops, jump.client];
  } else {
    try {
      const tcp = await connectSocket({ host: h.hostName, port: h.port }, { timeoutMs, signal });
      // ssh2 only listens for 'close': a server that goes away with a FIN must close the socket
      tcp.allowHalfOpen = false;
      sock = tcp;
    } catch (err) {
      const cause = (err as SmartcopyError).cause as NodeJS.ErrnoException | undefined;
      if (cause?.code === 'ECONNREFUSED') {
        throw new SmartcopyError('SC_ERR_CONNECT', `cannot connect to ${where(h)}: connection refused — is sshd listening on port ${h.port} there?`, {
          cause: err,
          retryable: true,
        });
      }
      throw err;
    }
  }
  try {
    const { client, algorithms } = await handshake(h, sock, opts, timeoutMs);
    // the target's connection runs inside the hops' channels: when it ends, so do they
    if (hops.length > 0) client.once('close', () => closeHops(hops));
    return { client, algorithms, hops };
  } catch (err) {
    sock.destroy();
    closeHops(hops);
    throw err;
  }
}

function closeHops(hops: readonly SshClient[]): void {
  for (let i = hops.length - 1; i >= 0; i--) hops[i]!.end();
}

function agentSocketOf(h: ResolvedSshHost, opts: SshOptions): string | undefined {
  if (opts.agentSocket !== undefined) return opts.agentSocket === '' ? undefined : opts.agentSocket;
  if (h.identityAgent === 'none') return undefined;
  if (h.identityAgent !== undefined) return h.identityAgent;
  const env = process.env.SSH_AUTH_SOCK;
  return env === undefined || env === '' ? undefined : env;
}

async function handshake(h: ResolvedSshHost, sock: Duplex, opts: SshOptions, timeoutMs: number): Promise<{ client: SshClient; algorithms: SshAlgorithms }> {
  const signal = opts.signal;
  const batchMode = opts.batchMode ?? h.batchMode;
  const ask: AskPassphrase | undefined =
    opts.askPassphrase === false ? undefined : (opts.askPassphrase ?? (hasTty() ? (req) => promptOnTty(req.prompt) : undefined));
  let deadline: Deadline | undefined;
  const plan = new AuthPlan({
    host: h,
    agentSocket: agentSocketOf(h, opts),
    batchMode,
    askPassphrase: ask,
    onPrompt: (active) => (active ? deadline?.pause() : deadline?.resume()),
  });
  await plan.prepare();

  const name = h.hostKeyAlias ?? knownHostsName(h.hostName, h.port);
  const knownFiles = [...h.userKnownHostsFiles, ...h.globalKnownHostsFiles];
  const preferred = knownKeyTypes(name, knownFiles).flatMap(hostKeyAlgorithms);
  const serverHostKey = [...new Set([...preferred, ...DEFAULT_HOST_KEY_ALGORITHMS])].filter((a) => DEFAULT_HOST_KEY_ALGORITHMS.includes(a));
  const cipher = opts.cipher !== undefined ? [opts.cipher] : [...(h.ciphers ?? DEFAULT_SSH_CIPHERS)];

  let hostKeyFailure: HostKeyError | SmartcopyError | undefined;
  const client = new Client();
  const keepalive = opts.keepaliveIntervalMs ?? h.serverAliveIntervalMs ?? SSH_KEEPALIVE_INTERVAL_MS;

  let algorithms: SshAlgorithms = { kex: '', hostKey: '', cipher: '' };
  client.once('handshake', (n: NegotiatedAlgorithms) => (algorithms = { kex: n.kex, hostKey: n.serverHostKey, cipher: n.cs.cipher }));

  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      cleanup();
      client.destroy();
      reject(err);
    };
    const onAbort = (): void => fail(abortReason(signal!, `connect to ${h.user}@${h.alias}`));
    const cleanup = (): void => {
      deadline?.clear();
      signal?.removeEventListener('abort', onAbort);
      client.off('ready', onReady);
      client.off('error', onError);
      client.off('close', onClose);
      // later errors (a destroyed client reports "Connection lost before handshake") are either
      // moot or reported by the connection through its close handling
      client.on('error', () => undefined);
    };
    const onReady = (): void => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve({ client, algorithms });
    };
    const onError = (err: Error & { level?: string }): void => {
      if (hostKeyFailure) return fail(hostKeyFailure);
      // a key the agent could not sign with, a key ssh2 could not use: the next method follows
      if ((err.level === 'agent' || err.level === 'client-authentication') && !plan.exhausted) return;
      if (err.level === 'client-authentication') return fail(plan.fatal ?? plan.failure());
      if (typeof (err as { code?: unknown }).code === 'number' && /too many authentication failures/i.test(err.message)) {
        return fail(plan.failure('the server closed the connection after too many attempts; name the right key with -i, or set IdentitiesOnly'));
      }
      fail(handshakeError(h, err));
    };
    const onClose = (): void => {
      fail(hostKeyFailure ?? handshakeError(h, Object.assign(new Error('Connection lost before handshake'), { level: 'protocol' })));
    };
    deadline = new Deadline(timeoutMs, () =>
      fail(
        new SmartcopyError(
          'SC_ERR_TIMEOUT',
          `${h.user}@${h.alias}: no SSH handshake with ${where(h)} within ${timeoutMs / 1000} s — is it an SSH server, and reachable? (ConnectTimeout in the SSH config sets this limit)`,
          { retryable: true },
        ),
      ),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    client.on('ready', onReady);
    client.on('error', onError);
    client.on('close', onClose);
    const config: ConnectConfig = {
      sock: sock as ConnectConfig['sock'],
      username: h.user,
      readyTimeout: 0,
      keepaliveInterval: keepalive,
      keepaliveCountMax: h.serverAliveCountMax ?? SSH_KEEPALIVE_COUNT_MAX,
      algorithms: { cipher: cipher as never, serverHostKey: serverHostKey as never },
      authHandler: plan.handler,
      hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
        try {
          const verdict = verifyHostKey(key, {
            name,
            userFiles: h.userKnownHostsFiles,
            globalFiles: h.globalKnownHostsFiles,
            strict: h.strictHostKeyChecking,
            acceptNew: opts.acceptNewHostKey ?? false,
            hash: h.hashKnownHosts,
            home: h.homeDir,
          });
          if (verdict.added !== undefined) {
            opts.onWarning?.(`Warning: Permanently added '${name}' (${keyTypeLabel(keyType(key))}) to the list of known hosts.`);
          }
          verify(true);
        } catch (err) {
          hostKeyFailure = err instanceof SmartcopyError ? err : new SmartcopyError('SC_ERR_AUTH', String(err));
          verify(false);
        }
      },
      ...(opts.debug ? { debug: opts.debug } : {}),
    };
    if (signal?.aborted) return onAbort();
    try {
      client.connect(config);
    } catch (err) {
      fail(err instanceof SmartcopyError ? err : new SmartcopyError('SC_ERR_CONNECT', `${h.user}@${h.alias}: ${String((err as Error).message ?? err)}`, { cause: err }));
    }
  });
}

/**
 * One SSH connection (ControlMaster-style): every stream is an exec channel on it, each running
 * the remote command (`smartcopy agent --protocol stdio`), and sftp() opens SFTP sessions on it.
 * A broken connection aborts every open stream with ConnectionClosedError.
 */
export class SshConnection extends AbstractConnection {
  readonly features = SSH_FEATURES;
  /** the resolved target (after config, ProxyJump not included) */
  readonly host: ResolvedSshHost;
  /** what openStream() runs */
  remoteCommand: string | undefined;
  /** the negotiated kex, host key and cipher */
  readonly algorithms: SshAlgorithms;
  readonly #client: SshClient;
  readonly #opts: SshOptions;
  #lastError: Error | undefined;
  #streams = 0;

  constructor(client: SshClient, host: ResolvedSshHost, algorithms: SshAlgorithms, opts: SshOptions) {
    super(`${host.user}@${formatHostPort(host.hostName, host.port)}`);
    this.host = host;
    this.algorithms = algorithms;
    this.remoteCommand = opts.remoteCommand;
    this.#client = client;
    this.#opts = opts;
    client.on('error', (err: Error) => (this.#lastError = err));
    client.on('close', () => {
      const why = this.#lastError ? `: ${/keepalive/i.test(this.#lastError.message) ? 'the server stopped answering keepalives' : describeStreamError(this.#lastError)}` : '';
      this.abort(new ConnectionClosedError(`SSH connection to ${this.remoteAddress} lost${why}`));
    });
  }

  /** Run `command` on its own exec channel; its stdin/stdout are the stream. */
  exec(command: string, opts: ExecOptions = {}): Promise<SshExecStream> {
    const req: ExecRequest = { ...opts, command };
    return this.openStream(req) as Promise<SshExecStream>;
  }

  /** One new SFTP session on this connection. */
  sftp(): Promise<SFTPWrapper> {
    if (this.state !== 'open') {
      return Promise.reject(new ConnectionClosedError(`cannot open SFTP: the SSH connection to ${this.remoteAddress} is ${this.state}`));
    }
    return new Promise((resolve, reject) => {
      this.#client.sftp((err, sftp) => {
        if (err) reject(this.#channelError('cannot start SFTP', err, 'is the sftp subsystem enabled in sshd_config?'));
        else resolve(sftp);
      });
    });
  }

  protected override async newStream(req: ExecRequest): Promise<Stream> {
    const command = req.command ?? this.remoteCommand;
    if (command === undefined) {
      throw new SmartcopyError('SC_ERR_USAGE', `SSH connection to ${this.remoteAddress}: no remote command to open a stream with (SshOptions.remoteCommand)`);
    }
    const signal = req.signal;
    const channel = await new Promise<ClientChannel>((resolve, reject) => {
      let done = false;
      const onAbort = (): void => {
        if (done) return;
        done = true;
        reject(abortReason(signal!, `open an SSH channel to ${this.remoteAddress}`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#client.exec(command, (err, ch) => {
        signal?.removeEventListener('abort', onAbort);
        if (done) {
          if (!err) ch.destroy();
          return;
        }
        done = true;
        if (err) reject(this.#channelError('cannot open an exec channel', err, 'sshd allows MaxSessions channels per connection (10 by default): use fewer streams'));
        else resolve(ch);
      });
    });
    const n = ++this.#streams;
    const stream = new SshExecStream(channel, {
      id: `ssh:${this.remoteAddress}#${n}`,
      describePeer: `${this.remoteAddress} (channel ${n})`,
      where: `${this.host.user}@${this.host.alias}`,
      command,
      onStderr: req.onStderr ?? this.#opts.onStderr,
      highWaterMark: this.#opts.highWaterMark,
      maxBuffered: this.#opts.maxBuffered,
    });
    if (signal) {
      const onAbort = (): void => stream.abort(abortReason(signal, `stream ${stream.id}`));
      signal.addEventListener('abort', onAbort, { once: true });
      void stream.closed.then(() => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  }

  protected override onClose(err?: Error): void {
    if (err) this.#client.destroy();
    else this.#client.end();
  }

  #channelError(what: string, err: Error, hint: string): SmartcopyError {
    if (this.state !== 'open' || /No response from server|Not connected/i.test(err.message)) {
      return new ConnectionClosedError(`${what} on ${this.remoteAddress}: the SSH connection is closed`, { cause: err });
    }
    const reason = err.message.replace(/^\(SSH\) /, '');
    return new SmartcopyError('SC_ERR_CONNECT', `${what} on ${this.remoteAddress}: ${reason} — ${hint}`, { cause: err, retryable: true });
  }
}

/**
 * Connect like `ssh` would: resolve the host through the OpenSSH config (explicit user/port/-i
 * win), go through ProxyJump hops, verify every host key against known_hosts, authenticate with
 * the agent then identity files.
 */
export async function sshConnect(target: SshTarget, opts: SshOptions = {}): Promise<SshConnection> {
  if (opts.cipher !== undefined && !SSH_CIPHERS.includes(opts.cipher)) {
    throw new SmartcopyError('SC_ERR_USAGE', `--ssh-cipher ${opts.cipher}: expected one of ${SSH_CIPHERS.join(', ')}`);
  }
  const host = resolveSshHost(target.host, { ...opts, user: target.user, port: target.port ?? opts.port });
  if (opts.signal?.aborted) throw abortReason(opts.signal, `connect to ${host.user}@${host.alias}`);
  const { client, algorithms } = await openClient(host, opts, 0);
  return new SshConnection(client, host, algorithms, opts);
}
