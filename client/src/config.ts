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

/** Everything a run needs, resolved once from the command line and frozen. */
export interface Config {
  source: string;
  destination: string;
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
}

export function defaultThreads(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}
