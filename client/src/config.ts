import os from 'node:os';
import type { HashAlgo } from '@smartcopy/protocol';
import type { FilterRule } from '@smartcopy/agent';

export type Order = 'smallest-first' | 'largest-first' | 'as-listed';

/** Named defaults (documented in the README). */
export const DEFAULT_BUFFER_SIZE = 1 << 20;
export const DEFAULT_STREAMS = 4;
/** Files at least this large are split into chunks spread over the streams. */
export const CHUNK_THRESHOLD = 64 * 1024 * 1024;
export const CHUNK_SIZE = 32 * 1024 * 1024;
export const DEFAULT_TCP_PORT = 9878;
export const DEFAULT_QUIC_PORT = 4433;
export const DEFAULT_WEBTRANSPORT_PORT = 4443;
/** fan-out: a node whose connection fails is tried this many more times */
export const DEFAULT_RETRIES = 2;
/** `--use-agent`: the program started on the remote (`--remote-cmd`) */
export const DEFAULT_REMOTE_CMD = 'smartcopy';
/** the ciphers `--ssh-cipher` offers, fastest here first (LIMITS.md: aes128-gcm 538 MiB/s) */
export const SSH_CIPHERS = ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com'] as const;
export type SshCipher = (typeof SSH_CIPHERS)[number];

/** Everything a run needs, resolved once from the command line and frozen. */
export interface Config {
  source: string;
  /** the first destination (the only one unless this is a fan-out) */
  destination: string;
  /** every destination: more than one makes a fan-out (one source pushed to many nodes) */
  destinations: string[];
  /** fan-out: attempts after the first for a node that failed with a retryable error */
  retries: number;
  threads: number;
  /** parallel connections to a remote agent */
  streams: number;
  bufferSize: number;
  verify: HashAlgo | undefined;
  incremental: boolean;
  checksum: boolean;
  deleteExtra: boolean;
  dryRun: boolean;
  rules: FilterRule[];
  minSize: number | undefined;
  maxSize: number | undefined;
  progress: boolean;
  verbose: number;
  quiet: boolean;
  json: boolean;
  filesFrom: string | undefined;
  order: Order;
  fsync: boolean;
  /** same-host copies may use the kernel copy (false: stream through the engine) */
  kernelCopy: boolean;
  compress: boolean;
  bandwidthLimit: number | undefined;
  tokenFile: string | undefined;
  token: Buffer | undefined;
  /** `host:/path` operands name a TCP agent on the default port (--tcp-agent) */
  tcpAgent: boolean;
  /** --delta: changed files that exist on both sides travel as rsync-style delta ops */
  delta: boolean;
  /** --block-size for delta signatures (undefined: from the file size, as rsync does) */
  blockSize: number | undefined;
  /** `[user@]host:path` operands are SSH targets */
  ssh: boolean;
  /** SSH: run a smartcopy agent on the remote over stdio (else SFTP) */
  useAgent: boolean;
  /** SSH: the command that starts smartcopy on the remote */
  remoteCmd: string;
  /** SSH: config file instead of ~/.ssh/config */
  sshConfig: string | undefined;
  /** SSH: identity files from -i/--ssh-key, tried after ssh-agent */
  sshKeys: string[];
  sshPort: number | undefined;
  sshCipher: SshCipher | undefined;
  acceptNewHostKey: boolean;
  /** `https://host/path` operands are WebTransport agents */
  webtransport: boolean;
  /** QUIC / WebTransport: the agent's expected fingerprint (else trust on first use) */
  quicFingerprint: string | undefined;
  /** QUIC: UDP payload bytes per datagram (undefined: the transport's default) */
  quicPayload: number | undefined;
}

export function defaultThreads(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}
