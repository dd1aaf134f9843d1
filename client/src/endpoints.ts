import fs from 'node:fs/promises';
import path from 'node:path';
import { Agent } from '@smartcopy/agent';
import { SmartcopyError } from '@smartcopy/protocol';
import {
  ConnectionPool,
  isRemoteCommandNotFound,
  memoryTransport,
  pinFingerprint,
  poolKey,
  quicTransport,
  tcpTransport,
  webTransportTransport,
  type Connection,
  type WebTransportPeerIdentity,
  type Listener,
  type SshExecStream,
  type Stream,
} from '@smartcopy/transports';
import type { SshConnection, SshOptions } from '@smartcopy/transports/ssh/index';
import type { Config } from './config.js';
import { knownAgentsFile, trustOnFirstUse } from './session/known-agents.js';
import type { RemoteTarget, Target } from './targets.js';
import { agentRelative } from './targets.js';

/** One side of a session reached through a transport: where its root is and how to close it. */
export interface Endpoint {
  conn: Connection;
  /** the path of the user's operand under the peer's root ('' = the root itself) */
  prefix: Buffer;
  /** how to name this endpoint in messages */
  display: string;
  /** streams may be kept for another session on this connection (a pooled connection) */
  recycle?: boolean;
  /** `reusable: false`: the session failed; do not keep the connection */
  close(reusable?: boolean): Promise<void>;
}

let memorySeq = 0;

/**
 * A local directory served by an in-process agent over the memory transport: local copies run
 * the same session as remote ones. The agent's root is the operand's parent directory (after
 * resolving symlinks, like cp and rsync follow a destination that is a link to a directory);
 * a missing operand is created under its nearest existing ancestor.
 */
export async function openLocal(p: string): Promise<Endpoint> {
  const { root, prefix } = await localRoot(p);
  const agent = await Agent.open({ root, sameHost: true, idleTimeoutMs: 0 });
  const transport = memoryTransport();
  const name = `local-${process.pid}-${++memorySeq}`;
  const listener: Listener = await transport.listen({ host: name }, (s) => agent.handleStream(s));
  const conn = await transport.dial(name);
  return {
    conn,
    prefix: Buffer.from(prefix),
    display: p,
    async close() {
      await conn.close().catch(() => {});
      await agent.close();
      await listener.close({ abortStreams: true });
    },
  };
}

export async function localRoot(p: string): Promise<{ root: string; prefix: string }> {
  const abs = path.resolve(p);
  const real = await fs.realpath(abs).catch(() => undefined);
  if (real !== undefined) {
    if (path.dirname(real) === real) return { root: real, prefix: '' };
    return { root: path.dirname(real), prefix: path.basename(real) };
  }
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    rest.unshift(path.basename(cur));
    cur = path.dirname(cur);
    const r = await fs.realpath(cur).catch(() => undefined);
    if (r !== undefined) return { root: r, prefix: rest.join('/') };
  }
}

/** What opening a remote endpoint may share with other runs in the process. */
export interface RemoteDeps {
  /** exclusive TCP connections (one stream per socket) */
  pool?: ConnectionPool;
  /** multiplexed connections (SSH, QUIC): one per host, shared by concurrent jobs */
  muxPool?: ConnectionPool;
  /** a line the remote side printed (the agent's stderr over SSH) */
  notice?: (line: string) => void;
}

/** Open the endpoint of a remote target: a TCP agent, or an agent started over SSH. */
export async function openEndpoint(t: RemoteTarget, cfg: Config, signal: AbortSignal | undefined, deps: RemoteDeps): Promise<Endpoint> {
  if (t.kind === 'tcp') return openRemote(t, signal, deps.pool);
  if (t.kind === 'quic' || t.kind === 'webtransport') return openMultiplexed(t, cfg, signal, deps);
  if (!cfg.useAgent) {
    throw new SmartcopyError('SC_ERR_INTERNAL', `${t.display}: an SSH target without --use-agent goes over SFTP, not through an agent session`);
  }
  return openSshAgent(t, cfg, signal, deps);
}

/** ssh2-side options of a run, from its Config. */
export function sshOptionsOf(cfg: Config, t: Extract<Target, { kind: 'ssh' }>, signal?: AbortSignal, notice?: (line: string) => void): SshOptions {
  return {
    ...(notice ? { onWarning: notice } : {}),
    configFile: cfg.sshConfig,
    identityFiles: cfg.sshKeys,
    port: t.port ?? cfg.sshPort,
    cipher: cfg.sshCipher,
    acceptNewHostKey: cfg.acceptNewHostKey,
    signal,
  };
}

/** Connect over SSH (or reuse the pooled connection to that host); `release` gives it back. */
export async function sshLease(
  t: Extract<Target, { kind: 'ssh' }>,
  cfg: Config,
  signal: AbortSignal | undefined,
  muxPool: ConnectionPool | undefined,
  notice?: (line: string) => void,
): Promise<{ ssh: SshConnection; release(reusable: boolean): void }> {
  // ssh2 is loaded only when a run uses SSH (it costs 100-200 ms of start-up)
  const { sshConnect } = await import('@smartcopy/transports/ssh/index');
  const dial = async (): Promise<SshConnection> => sshConnect({ host: t.host, user: t.user }, sshOptionsOf(cfg, t, signal, notice));
  if (!muxPool) {
    const ssh = await dial();
    return { ssh, release: () => void ssh.close().catch(() => {}) };
  }
  const key = poolKey('ssh', `${t.host}:${t.port ?? cfg.sshPort ?? ''}`, t.user);
  const lease = await muxPool.acquire(key, dial, { signal });
  return { ssh: lease.conn as SshConnection, release: (reusable) => lease.release(reusable && !signal?.aborted) };
}

/**
 * The stream source of an agent started over SSH: every stream is an exec channel running
 * `<remote-cmd> agent --protocol stdio --root R` on one shared SSH connection. Adapters are
 * cached per (connection, command) so streams a finished session left idle are reused.
 */
class SshAgentConnection implements Connection {
  readonly features;
  readonly remoteAddress: string;
  readonly closed: Promise<void>;
  constructor(
    private readonly ssh: SshConnection,
    private readonly command: string,
    private readonly notice: (line: string) => void,
  ) {
    this.features = ssh.features;
    this.remoteAddress = ssh.remoteAddress;
    this.closed = ssh.closed;
  }
  async openStream(opts: { signal?: AbortSignal } = {}): Promise<Stream> {
    // What the remote writes on stderr before the agent has said a word is usually the shell
    // failing to start it; held back until we know, so "not installed" is reported once.
    const early: string[] = [];
    let stream: SshExecStream | undefined;
    const onStderr = (line: string): void => {
      if (stream && stream.bytesRead > 0) {
        for (const l of early.splice(0)) this.notice(l);
        this.notice(line);
      } else early.push(line);
    };
    stream = await this.ssh.exec(this.command, { onStderr, signal: opts.signal });
    void stream.exit.then((x) => {
      const lines = early.splice(0);
      if (x.code !== NOT_FOUND_STATUS) for (const l of lines) this.notice(l);
    });
    return stream;
  }
  async close(): Promise<void> {}
  abort(err?: Error): void {
    this.ssh.abort(err);
  }
}

/** the POSIX shell's exit status for a command it cannot find */
const NOT_FOUND_STATUS = 127;

/** A remote agent that cannot be started, as the one line a user needs. */
export function explainRemoteFailure(e: unknown): unknown {
  if (!isRemoteCommandNotFound(e)) return e;
  const said = e.stderr.trim().split('\n').pop()?.trim();
  return new SmartcopyError(
    'SC_ERR_CONNECT',
    `smartcopy is not installed on the remote${said ? ` (${said})` : ''}: install it there (npm install -g smartcopy, or deploy/install.sh), point --remote-cmd at it, or drop --use-agent to copy over SFTP`,
  );
}

const agentConns = new WeakMap<SshConnection, Map<string, SshAgentConnection>>();

async function openSshAgent(t: Extract<Target, { kind: 'ssh' }>, cfg: Config, signal: AbortSignal | undefined, deps: RemoteDeps): Promise<Endpoint> {
  // An absolute path is served by an agent rooted at '/', a relative one by an agent rooted at
  // the login directory, as scp and rsync resolve them.
  const absolute = t.path.startsWith('/');
  const prefix = Buffer.from(agentRelative(t.path));
  const command = `${cfg.remoteCmd} agent --protocol stdio --root ${absolute ? '/' : '.'}`;
  const { ssh, release } = await sshLease(t, cfg, signal, deps.muxPool, deps.notice);
  let byCmd = agentConns.get(ssh);
  if (!byCmd) agentConns.set(ssh, (byCmd = new Map()));
  let conn = byCmd.get(command);
  const notice = deps.notice ?? ((line: string) => process.stderr.write(`smartcopy: ${line}\n`));
  if (!conn) byCmd.set(command, (conn = new SshAgentConnection(ssh, command, (line) => notice(`${t.host}: ${line}`))));
  return {
    conn,
    prefix,
    display: t.display,
    recycle: deps.muxPool !== undefined,
    async close(reusable = true) {
      release(reusable);
    },
  };
}

/**
 * The dialer of a QUIC or WebTransport agent. The agent is checked against --quic-fingerprint,
 * or else against the fingerprint recorded on first use. A WebTransport agent renews its
 * certificate every 13 days (the most a pinned WebTransport certificate may last) with the same
 * key, so it is known by its public key's fingerprint.
 */
function multiplexedDialer(t: Extract<Target, { kind: 'quic' | 'webtransport' }>, cfg: Config, address: string, notice: (line: string) => void): (sig?: AbortSignal) => Promise<Connection> {
  if (t.kind === 'quic') {
    const verifyPeer = cfg.quicFingerprint !== undefined ? pinFingerprint(cfg.quicFingerprint) : trustOnFirstUse(knownAgentsFile(), notice);
    return (sig) => quicTransport({ verifyPeer, maxPayload: cfg.quicPayload }).dial(address, { signal: sig });
  }
  const pinned = cfg.quicFingerprint;
  const tofu = trustOnFirstUse(knownAgentsFile(), notice, (p) => ({ address: `wt://${p.address}`, fingerprint: (p as WebTransportPeerIdentity).publicKeyFingerprint }));
  const verifyPeer = async (peer: WebTransportPeerIdentity): Promise<void> => {
    if (pinned === undefined) return tofu(peer);
    if (peer.publicKeyFingerprint === pinned || peer.fingerprint === pinned) return;
    throw new SmartcopyError('SC_ERR_AUTH', `WebTransport agent ${peer.address} presented key ${peer.publicKeyFingerprint}, not the pinned ${pinned} — refusing to connect`);
  };
  return (sig) => webTransportTransport({ verifyPeer }).dial(address, { signal: sig });
}

/**
 * A QUIC or WebTransport agent: one connection per agent (shared through the pool by concurrent
 * jobs), one stream of it per session stream.
 */
async function openMultiplexed(t: Extract<Target, { kind: 'quic' | 'webtransport' }>, cfg: Config, signal: AbortSignal | undefined, deps: RemoteDeps): Promise<Endpoint> {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  const address = `${host}:${t.port}`;
  const prefix = Buffer.from(agentRelative(t.path));
  const notice = deps.notice ?? ((line: string) => process.stderr.write(`smartcopy: ${line}\n`));
  const dial = multiplexedDialer(t, cfg, address, notice);
  if (!deps.muxPool) {
    const conn = await dial(signal);
    return {
      conn,
      prefix,
      display: t.display,
      async close() {
        await conn.close().catch(() => {});
      },
    };
  }
  const lease = await deps.muxPool.acquire(poolKey(t.kind, address), dial, { signal });
  return {
    conn: lease.conn,
    prefix,
    display: t.display,
    recycle: true,
    async close(reusable = true) {
      lease.release(reusable && !signal?.aborted);
    },
  };
}

/**
 * A remote agent. With a pool (the library API), the connection, and the streams whose sessions
 * ended cleanly, are kept for the next job to the same agent; otherwise they are closed.
 */
export async function openRemote(t: Extract<Target, { kind: 'tcp' }>, signal?: AbortSignal, pool?: ConnectionPool): Promise<Endpoint> {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  const address = `${host}:${t.port}`;
  const prefix = Buffer.from(agentRelative(t.path));
  if (!pool) {
    const conn = await tcpTransport().dial(address, { signal });
    return {
      conn,
      prefix,
      display: t.display,
      async close() {
        await conn.close().catch(() => {});
      },
    };
  }
  const lease = await pool.acquire(poolKey('tcp', address), (sig) => tcpTransport().dial(address, { signal: sig }), { signal });
  return {
    conn: lease.conn,
    prefix,
    display: t.display,
    recycle: true,
    async close(reusable = true) {
      lease.release(reusable && !signal?.aborted);
    },
  };
}

export function joinRel(a: Uint8Array, b: Uint8Array): Buffer {
  if (a.length === 0) return Buffer.from(b);
  if (b.length === 0) return Buffer.from(a);
  return Buffer.concat([a, Buffer.from('/'), b]);
}
