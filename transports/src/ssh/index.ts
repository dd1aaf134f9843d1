import { SmartcopyError } from '@smartcopy/protocol';
import type { DialOptions, Listener, Transport } from '../types.js';
import { SSH_FEATURES, sshConnect } from './connection.js';
import type { SshOptions, SshTarget } from './connection.js';

export {
  DEFAULT_IDENTITY_FILES,
  DEFAULT_SSH_CIPHERS,
  DEFAULT_SSH_PORT,
  parseProxyJump,
  resolveSshHost,
  SSH_CIPHERS,
} from './config.js';
export type { ResolvedSshHost, SshCipher, SshHop, SshResolveOptions, StrictHostKeyChecking } from './config.js';
export {
  fingerprint,
  hashHostName,
  HostKeyError,
  hostFieldMatches,
  knownHostsName,
  readKnownHosts,
  verifyHostKey,
} from './known-hosts.js';
export type { HostKeyPolicy, HostKeyProblem, HostKeyVerdict, KnownHostEntry } from './known-hosts.js';
export { AGENT_QUERY_TIMEOUT_MS, PASSPHRASE_ATTEMPTS } from './auth.js';
export type { AskPassphrase, PassphraseRequest } from './auth.js';
export { hasTty, promptOnTty } from './passphrase.js';
export {
  EXIT_STATUS_GRACE_MS,
  isRemoteCommandNotFound,
  RemoteCommandError,
  RemoteCommandNotFoundError,
  SshExecStream,
} from './exec-stream.js';
export type { RemoteExit, SshExecStreamInit } from './exec-stream.js';
export { MAX_PROXY_JUMP_DEPTH, SSH_FEATURES, SSH_KEEPALIVE_COUNT_MAX, SSH_KEEPALIVE_INTERVAL_MS, SshConnection, sshConnect } from './connection.js';
export type { ExecOptions, SshAlgorithms, SshOptions, SshTarget } from './connection.js';

/** `[user@]host[:port]`, `[user@][v6]:port` or `ssh://[user@]host[:port]`. */
export function parseSshAddress(address: string): SshTarget {
  const m = /^(?:ssh:\/\/)?(?:([^@/]+)@)?(\[[^\]]+\]|[^:/@]+)(?::(\d+))?\/?$/.exec(address);
  const port = m?.[3] === undefined ? undefined : Number(m[3]);
  if (!m || (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535))) {
    throw new SmartcopyError('SC_ERR_USAGE', `invalid SSH address ${JSON.stringify(address)}: expected [user@]host[:port]`);
  }
  const host = m[2]!.startsWith('[') ? m[2]!.slice(1, -1) : m[2]!;
  return { host, ...(m[1] ? { user: m[1] } : {}), ...(port !== undefined ? { port } : {}) };
}

/**
 * SSH as a Transport: dial() connects (one SSH connection; streams are exec channels running
 * `opts.remoteCommand`). There is no SSH listener: the far end is sshd running
 * `smartcopy agent --protocol stdio`.
 */
export function sshTransport(opts: SshOptions = {}): Transport {
  return {
    kind: 'ssh',
    features: SSH_FEATURES,
    dial(address: string, dialOpts: DialOptions = {}) {
      const target = parseSshAddress(address);
      return sshConnect(target, {
        ...opts,
        ...(dialOpts.signal ? { signal: dialOpts.signal } : {}),
        ...(dialOpts.timeoutMs !== undefined ? { timeoutMs: dialOpts.timeoutMs } : {}),
      });
    },
    listen(): Promise<Listener> {
      return Promise.reject(
        new SmartcopyError(
          'SC_ERR_UNSUPPORTED',
          'the SSH transport cannot listen: the server side is sshd, which runs `smartcopy agent --protocol stdio` for each channel',
        ),
      );
    },
  };
}
