import { SmartcopyError, type HashAlgo } from '@smartcopy/protocol';
import type { FilterRule } from '@smartcopy/agent';
import { ConnectionPool, POOL_IDLE_TIMEOUT_MS, type PoolStats, poolKey } from '@smartcopy/transports';
import { DEFAULT_BUFFER_SIZE, DEFAULT_REMOTE_CMD, DEFAULT_STREAMS, defaultThreads, type Config, type Order, type SshCipher } from './config.js';
import type { FileAction, RunEvents, Summary } from './progress/accounting.js';
import { runCopy } from './run.js';

/** Options of the library API; the same meaning as the CLI flags (README "Copy options"). */
export interface CopyOptions {
  threads?: number;
  streams?: number;
  bufferSize?: number;
  verify?: HashAlgo;
  incremental?: boolean;
  checksum?: boolean;
  deleteExtra?: boolean;
  dryRun?: boolean;
  /** ordered include/exclude rules, first match wins */
  rules?: FilterRule[];
  minSize?: number;
  maxSize?: number;
  filesFrom?: string;
  order?: Order;
  fsync?: boolean;
  kernelCopy?: boolean;
  compress?: boolean;
  delta?: boolean;
  blockSize?: number;
  bandwidthLimit?: number;
  token?: string | Buffer;
  /** SSH options: the same as --ssh, --use-agent, --remote-cmd, --ssh-config, -i, --ssh-port, --ssh-cipher, --accept-new-host-key */
  ssh?: boolean;
  useAgent?: boolean;
  remoteCmd?: string;
  sshConfig?: string;
  sshKeys?: string[];
  sshPort?: number;
  sshCipher?: SshCipher;
  acceptNewHostKey?: boolean;
  /** QUIC: --quic-fingerprint (canonical SHA256:... form) and --quic-payload */
  quicFingerprint?: string;
  quicPayload?: number;
  signal?: AbortSignal;
  /** every file outcome as it happens */
  onFile?: (ev: { path: string; action: FileAction; bytes: number; error?: SmartcopyError }) => void;
}

export interface CopyResult extends Summary {
  errors: SmartcopyError[];
}

/**
 * Connections to agents are shared by every copy() in this process: a job to an agent that an
 * earlier job used reuses its TCP connections (and starts its session on streams the earlier
 * session ended cleanly), up to 4 connections per agent, closed after a minute idle.
 */
let pool = new ConnectionPool({ idleTimeoutMs: POOL_IDLE_TIMEOUT_MS });
/** SSH and QUIC connections carry many streams: one per host, shared by concurrent jobs. */
const MUX_LEASES = 64;
const newMuxPool = (): ConnectionPool => new ConnectionPool({ idleTimeoutMs: POOL_IDLE_TIMEOUT_MS, maxPerKey: 1, maxLeasesPerConnection: MUX_LEASES });
let muxPool = newMuxPool();

/** Copy `source` to `destination` (same forms and rules as the CLI). Resolves with the summary; never throws for transfer failures (see `exitCode`, `errors`). */
export async function copy(source: string, destination: string, opts: CopyOptions = {}): Promise<CopyResult> {
  const cfg: Config = Object.freeze({
    source,
    destination,
    destinations: [destination],
    retries: 0,
    threads: opts.threads ?? defaultThreads(),
    streams: opts.streams ?? DEFAULT_STREAMS,
    bufferSize: opts.bufferSize ?? DEFAULT_BUFFER_SIZE,
    verify: opts.verify,
    incremental: opts.incremental ?? false,
    checksum: opts.checksum ?? false,
    deleteExtra: opts.deleteExtra ?? false,
    dryRun: opts.dryRun ?? false,
    rules: opts.rules ?? [],
    minSize: opts.minSize,
    maxSize: opts.maxSize,
    progress: false,
    verbose: 0,
    quiet: true,
    json: false,
    filesFrom: opts.filesFrom,
    order: opts.order ?? 'largest-first',
    fsync: opts.fsync ?? false,
    kernelCopy: opts.kernelCopy ?? true,
    compress: opts.compress ?? false,
    bandwidthLimit: opts.bandwidthLimit,
    tokenFile: undefined,
    token: opts.token === undefined ? undefined : Buffer.from(opts.token),
    tcpAgent: false,
    delta: opts.delta ?? false,
    blockSize: opts.blockSize,
    ssh: opts.ssh ?? false,
    useAgent: opts.useAgent ?? false,
    remoteCmd: opts.remoteCmd ?? DEFAULT_REMOTE_CMD,
    sshConfig: opts.sshConfig,
    sshKeys: opts.sshKeys ?? [],
    sshPort: opts.sshPort,
    sshCipher: opts.sshCipher,
    acceptNewHostKey: opts.acceptNewHostKey ?? false,
    webtransport: false,
    quicFingerprint: opts.quicFingerprint,
    quicPayload: opts.quicPayload,
  });
  let summary: Summary | undefined;
  const errors: SmartcopyError[] = [];
  const sink = (): RunEvents => ({
    start() {},
    file: (ev) => opts.onFile?.(ev),
    error: (e) => void errors.push(e),
    tick() {},
    summary: (s) => void (summary = s),
  });
  const signal = opts.signal ?? new AbortController().signal;
  await runCopy(cfg, { stdout: process.stdout, stderr: process.stderr }, signal, { pool, muxPool, events: sink });
  return { ...summary!, errors };
}

/** Pool figures for an agent address ("host:port"). */
export function connectionStats(address: string): PoolStats {
  return pool.stats(poolKey('tcp', address));
}

/**
 * Close every pooled connection (idle sockets keep a process alive: call this when done). Later
 * copies start a fresh pool.
 */
export async function closeConnections(): Promise<void> {
  const old = [pool, muxPool];
  pool = new ConnectionPool({ idleTimeoutMs: POOL_IDLE_TIMEOUT_MS });
  muxPool = newMuxPool();
  await Promise.all(old.map((p) => p.closeAll()));
}
