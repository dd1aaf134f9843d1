import fs from 'node:fs';
import { HASH_ALGOS, SmartcopyError, type HashAlgo } from '@smartcopy/protocol';
import type { FilterRule } from '@smartcopy/agent';
import { normalizeFingerprint } from '@smartcopy/transports';
import { DEFAULT_BUFFER_SIZE, DEFAULT_STREAMS, DEFAULT_REMOTE_CMD, DEFAULT_RETRIES, SSH_CIPHERS, defaultThreads, type Config, type Order, type SshCipher } from '../config.js';
import { parseRate, parseSize } from './sizes.js';
import { parseHostsFile } from '../fanout/hosts-file.js';

/** The copy command's flags, in the order the README lists them. */
export const COPY_OPTIONS = {
  threads: { type: 'number', describe: 'files copied in parallel (default: number of cores)' },
  streams: { type: 'number', describe: `parallel connections to a remote agent (default ${DEFAULT_STREAMS})` },
  'buffer-size': { type: 'string', describe: 'I/O buffer size, e.g. 1M (default 1M)' },
  verify: { type: 'string', choices: HASH_ALGOS as unknown as string[], describe: 're-read every written file and compare its hash with the source before it gets its final name' },
  incremental: { type: 'boolean', describe: 'skip files whose size and mtime match the destination' },
  checksum: { type: 'boolean', describe: 'skip files whose content hash matches the destination (reads both sides)' },
  'delete-extra': { type: 'boolean', describe: 'delete destination entries that the source does not have' },
  'dry-run': { alias: 'n', type: 'boolean', describe: 'show what would be done; change nothing' },
  include: { type: 'string', array: true, describe: 'include paths matching GLOB (ordered with --exclude; first match wins)' },
  exclude: { type: 'string', array: true, describe: 'exclude paths matching GLOB' },
  'min-size': { type: 'string', describe: 'skip files smaller than SIZE' },
  'max-size': { type: 'string', describe: 'skip files larger than SIZE' },
  progress: { type: 'boolean', describe: 'show progress even when stderr is not a terminal' },
  verbose: { alias: 'v', type: 'count', describe: 'list every file transferred (-vv: also skipped ones)' },
  quiet: { alias: 'q', type: 'boolean', describe: 'print errors only' },
  json: { type: 'boolean', describe: 'NDJSON events on stdout (see README)' },
  'files-from': { type: 'string', describe: 'copy only the paths listed in FILE (one per line, or a JSON array of {src, dst})' },
  order: { type: 'string', choices: ['smallest-first', 'largest-first', 'as-listed'], describe: 'order in which files are started (default largest-first)' },
  fsync: { type: 'boolean', describe: 'fsync every file before it gets its final name' },
  'kernel-copy': { type: 'boolean', default: true, describe: 'local copies: let the kernel copy file data (copy_file_range/reflink); --no-kernel-copy streams it through smartcopy (large files in parallel chunks)' },
  compress: { alias: 'z', type: 'boolean', describe: 'LZ4-compress data to a remote agent when it pays' },
  'bandwidth-limit': { type: 'string', describe: 'cap the transfer rate to RATE bytes/s over all streams, e.g. 100M' },
  'token-file': { type: 'string', describe: 'file holding the agent token (or set SMARTCOPY_TOKEN)' },
  delta: { type: 'boolean', describe: 'send changed files that exist on both sides as rsync-style delta (rolling checksum) ops' },
  'block-size': { type: 'string', describe: 'delta block size (default: from the file size, as rsync does)' },
  'hosts-file': { type: 'string', describe: 'fan-out: more destinations, one per line (# comments); the source is read once for all of them' },
  retries: { type: 'number', describe: `fan-out: attempts after the first for a node that failed to connect or lost its connection (default ${DEFAULT_RETRIES})` },
  'tcp-agent': { type: 'boolean', describe: 'the remote side is a TCP agent (implied by host:port:/path and tcp:// forms)' },
  ssh: { type: 'boolean', describe: '[user@]host:path operands are reached over SSH (implied by ssh://)' },
  'use-agent': { type: 'boolean', describe: 'SSH: run `smartcopy agent --protocol stdio` on the remote (delta, resume, parallel streams); without it, SFTP' },
  'remote-cmd': { type: 'string', describe: 'SSH: how to start smartcopy on the remote (default "smartcopy"), like rsync --rsync-path' },
  'ssh-config': { type: 'string', describe: 'SSH: read this config file instead of ~/.ssh/config (like ssh -F)' },
  'ssh-key': { alias: 'i', type: 'string', array: true, describe: 'SSH: identity file to try (after ssh-agent), like ssh -i' },
  'ssh-port': { type: 'number', describe: 'SSH: port (overrides ~/.ssh/config)' },
  'ssh-cipher': { type: 'string', choices: SSH_CIPHERS as unknown as string[], describe: 'SSH: cipher (default: aes128-gcm@openssh.com first, like a fast OpenSSH setup)' },
  'accept-new-host-key': { type: 'boolean', describe: 'SSH: trust and record the host key of a host not yet in known_hosts (a changed key is always refused)' },
  'quic-fingerprint': { type: 'string', describe: 'QUIC/WebTransport: the agent fingerprint to require (SHA256:... as the agent prints it); without it, the first one seen is recorded in ~/.smartcopy/known_agents' },
  webtransport: { type: 'boolean', describe: 'https://host[:port]/path operands are WebTransport agents (like wt://): the variant that passes firewalls dropping UDP' },
  'quic-payload': { type: 'number', describe: 'QUIC: UDP payload bytes per datagram, 1200-16383 (default 1350; larger only on jumbo-frame networks or loopback, see README)' },
  'control-master': { type: 'boolean', describe: 'SSH: accepted for OpenSSH users; smartcopy always multiplexes its streams over one SSH connection per host' },
} as const;

export interface ParsedCopyArgs {
  source: string;
  destinations: string[];
  'hosts-file'?: string;
  retries?: number;
  threads?: number;
  streams?: number;
  'buffer-size'?: string;
  verify?: string;
  incremental?: boolean;
  checksum?: boolean;
  'delete-extra'?: boolean;
  'dry-run'?: boolean;
  'min-size'?: string;
  'max-size'?: string;
  progress?: boolean;
  verbose?: number;
  quiet?: boolean;
  json?: boolean;
  'files-from'?: string;
  order?: string;
  fsync?: boolean;
  'kernel-copy'?: boolean;
  compress?: boolean;
  'bandwidth-limit'?: string;
  'token-file'?: string;
  'tcp-agent'?: boolean;
  delta?: boolean;
  'block-size'?: string;
  ssh?: boolean;
  'use-agent'?: boolean;
  'remote-cmd'?: string;
  'ssh-config'?: string;
  'ssh-key'?: string[];
  'ssh-port'?: number;
  'ssh-cipher'?: string;
  'accept-new-host-key'?: boolean;
  'control-master'?: boolean;
  'quic-fingerprint'?: string;
  webtransport?: boolean;
  'quic-payload'?: number;
}

/**
 * --include/--exclude keep their command-line order (rsync semantics: the first matching rule
 * decides), which yargs' per-flag arrays lose; read them from argv directly.
 */
export function orderedRules(argv: readonly string[]): FilterRule[] {
  const rules: FilterRule[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    const m = /^--(include|exclude)(?:=(.*))?$/.exec(a);
    if (!m) continue;
    const pattern = m[2] ?? argv[++i];
    if (pattern === undefined || pattern === '') throw new SmartcopyError('SC_ERR_USAGE', `--${m[1]} needs a pattern`);
    rules.push({ include: m[1] === 'include', pattern });
  }
  return rules;
}

function positiveInt(v: number | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1 || v > 1024) throw new SmartcopyError('SC_ERR_USAGE', `${flag} must be a whole number from 1 to 1024`);
  return v;
}

export function readToken(tokenFile: string | undefined): Buffer | undefined {
  if (tokenFile) {
    let text: string;
    try {
      text = fs.readFileSync(tokenFile, 'utf8');
    } catch (e) {
      throw new SmartcopyError('SC_ERR_USAGE', `--token-file ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
    const t = text.trim();
    if (!t) throw new SmartcopyError('SC_ERR_USAGE', `--token-file ${tokenFile} is empty`);
    return Buffer.from(t);
  }
  const env = process.env.SMARTCOPY_TOKEN?.trim();
  return env ? Buffer.from(env) : undefined;
}

function blockSizeOf(a: ParsedCopyArgs): number | undefined {
  if (a['block-size'] === undefined) return undefined;
  if (!a.delta) throw new SmartcopyError('SC_ERR_USAGE', '--block-size only applies with --delta');
  const b = parseSize(a['block-size'], '--block-size');
  if (b < 64 || b > 1024 * 1024) throw new SmartcopyError('SC_ERR_USAGE', '--block-size must be between 64 and 1M');
  return b;
}

function readHostsFile(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new SmartcopyError('SC_ERR_USAGE', `--hosts-file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  return parseHostsFile(text);
}

function remoteCmdOf(v: string | undefined): string {
  if (v === undefined) return DEFAULT_REMOTE_CMD;
  if (v.trim() === '') throw new SmartcopyError('SC_ERR_USAGE', '--remote-cmd is empty');
  return v;
}

function sshPortOf(v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 1 || v > 65535) throw new SmartcopyError('SC_ERR_USAGE', '--ssh-port must be 1-65535');
  return v;
}

export function resolveConfig(a: ParsedCopyArgs, rawArgv: readonly string[]): Config {
  const bufferSize = a['buffer-size'] ? parseSize(a['buffer-size'], '--buffer-size') : DEFAULT_BUFFER_SIZE;
  if (bufferSize < 4096 || bufferSize > 16 * 1024 * 1024) {
    throw new SmartcopyError('SC_ERR_USAGE', '--buffer-size must be between 4K and 16M');
  }
  const minSize = a['min-size'] ? parseSize(a['min-size'], '--min-size') : undefined;
  const maxSize = a['max-size'] ? parseSize(a['max-size'], '--max-size') : undefined;
  if (minSize !== undefined && maxSize !== undefined && minSize > maxSize) {
    throw new SmartcopyError('SC_ERR_USAGE', '--min-size is larger than --max-size: nothing would be copied');
  }
  if (a.incremental && a.checksum) {
    throw new SmartcopyError('SC_ERR_USAGE', '--incremental and --checksum are alternatives; pick one');
  }
  if (a['files-from'] && a['delete-extra']) {
    throw new SmartcopyError('SC_ERR_USAGE', '--delete-extra cannot be combined with --files-from (only part of the tree is compared)');
  }
  if (a['control-master'] === false) {
    throw new SmartcopyError('SC_ERR_USAGE', '--no-control-master: smartcopy always runs its streams as channels of one SSH connection per host');
  }
  if (a.quiet && (a.verbose ?? 0) > 0) throw new SmartcopyError('SC_ERR_USAGE', '-q and -v contradict each other');
  const destinations = [...a.destinations, ...(a['hosts-file'] ? readHostsFile(a['hosts-file']) : [])];
  if (destinations.length === 0) throw new SmartcopyError('SC_ERR_USAGE', 'no destination: give DST, or --hosts-file with at least one line');
  if (a.retries !== undefined && a.retries !== 0 && destinations.length < 2) {
    throw new SmartcopyError('SC_ERR_USAGE', '--retries applies to fan-out (several destinations); a single copy fails fast, rerun it to resume');
  }
  if (a.retries !== undefined && (!Number.isInteger(a.retries) || a.retries < 0 || a.retries > 100)) {
    throw new SmartcopyError('SC_ERR_USAGE', '--retries must be a whole number from 0 to 100');
  }
  return Object.freeze({
    source: a.source,
    destination: destinations[0]!,
    destinations,
    retries: a.retries ?? DEFAULT_RETRIES,
    threads: positiveInt(a.threads, '--threads', defaultThreads()),
    streams: positiveInt(a.streams, '--streams', DEFAULT_STREAMS),
    bufferSize,
    verify: a.verify as HashAlgo | undefined,
    incremental: a.incremental ?? false,
    checksum: a.checksum ?? false,
    deleteExtra: a['delete-extra'] ?? false,
    dryRun: a['dry-run'] ?? false,
    rules: orderedRules(rawArgv),
    minSize,
    maxSize,
    progress: a.progress ?? false,
    verbose: a.verbose ?? 0,
    quiet: a.quiet ?? false,
    json: a.json ?? false,
    filesFrom: a['files-from'],
    order: (a.order ?? 'largest-first') as Order,
    fsync: a.fsync ?? false,
    kernelCopy: a['kernel-copy'] ?? true,
    compress: a.compress ?? false,
    bandwidthLimit: a['bandwidth-limit'] ? parseRate(a['bandwidth-limit'], '--bandwidth-limit') : undefined,
    tokenFile: a['token-file'],
    token: readToken(a['token-file']),
    tcpAgent: a['tcp-agent'] ?? false,
    delta: a.delta ?? false,
    blockSize: blockSizeOf(a),
    ssh: a.ssh ?? false,
    useAgent: a['use-agent'] ?? false,
    remoteCmd: remoteCmdOf(a['remote-cmd']),
    sshConfig: a['ssh-config'],
    sshKeys: a['ssh-key'] ?? [],
    sshPort: sshPortOf(a['ssh-port']),
    sshCipher: a['ssh-cipher'] as SshCipher | undefined,
    acceptNewHostKey: a['accept-new-host-key'] ?? false,
    webtransport: a.webtransport ?? false,
    quicFingerprint: a['quic-fingerprint'] === undefined ? undefined : normalizeFingerprint(a['quic-fingerprint']),
    quicPayload: a['quic-payload'],
  });
}
