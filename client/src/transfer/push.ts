import fs from 'node:fs/promises';
import path from 'node:path';
import { randomInt } from 'node:crypto';
import { EntryType, FEATURE_DELTA, FEATURE_NATIVE_COPY, FEATURE_RESUME, SmartcopyError, fromSystemError, type Welcome } from '@smartcopy/protocol';
import type { Connection } from '@smartcopy/transports';
import { BufferPool, TokenBucket, scanTree, type BlockSource, type ScanResult } from '@smartcopy/agent';
import type { Config } from '../config.js';
import { joinRel, openEndpoint, openLocal, type Endpoint } from '../endpoints.js';
import { readFilesFrom, scanFilesFrom } from '../plan/files-from.js';
import { listingToMap, mapSource, mappingRoot, planOptions, type Mapped } from '../plan/map.js';
import { makePlan, type SourceItem } from '../plan/plan.js';
import type { Accounting, RunEvents } from '../progress/accounting.js';
import { reportDryRun, reportPlanned, reportScanErrors } from '../progress/report.js';
import { ClientStream } from '../session/client-stream.js';
import { newSessionId, openChannel, recycleChannel } from '../session/connect.js';
import type { Target } from '../targets.js';
import type { RunDeps } from '../run.js';
import { executePlan, type ExecuteContext } from './execute.js';
import { finishStreams, hasChunks, openMoreStreams, wireBytes } from './streams.js';

type SourceListing = ScanResult & { items?: SourceItem[] };

/** The kind of the source root (a symlink root is followed, like the walk does). */
export async function srcKindOf(srcAbs: string, filesFrom: boolean): Promise<string> {
  if (filesFrom) return 'directory';
  const st = await fs.stat(srcAbs).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' || e.code === 'ENOTDIR' ? undefined : e));
  if (st === undefined) {
    // a dangling symlink is copied as a link
    return (await fs.lstat(srcAbs).catch(() => undefined))?.isSymbolicLink() ? 'file' : 'missing';
  }
  if (st instanceof Error) throw fromSystemError(st, 'read', srcAbs);
  return st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other';
}


export function scanLocalSource(cfg: Config, srcAbs: string, signal: AbortSignal): Promise<SourceListing> {
  return scanTree(
    Buffer.from(srcAbs),
    {
      rules: cfg.rules,
      minSize: cfg.minSize,
      maxSize: cfg.maxSize,
      hashAlgo: cfg.checksum ? 'xxhash64' : undefined,
      followRootLink: true,
      hideParts: true,
    },
    signal,
  );
}

/**
 * Push: the local side sends. The destination is a local directory (served by an in-process
 * agent over the memory transport) or a remote agent; the session is the same.
 */
export async function push(cfg: Config, src: Extract<Target, { kind: 'local' }>, dst: Target, acct: Accounting, events: RunEvents, signal: AbortSignal, deps: RunDeps = {}): Promise<void> {
  const srcAbs = path.resolve(src.path);
  const srcBuf = Buffer.from(srcAbs);
  const filesFrom = cfg.filesFrom ? await readFilesFrom(cfg.filesFrom) : undefined;
  // The source is listed in a worker thread while we connect to the destination.
  const srcScan: Promise<SourceListing> = filesFrom ? scanFilesFrom(cfg, srcAbs, filesFrom, signal) : scanLocalSource(cfg, srcAbs, signal);
  srcScan.catch(() => {});
  let endpoint: Endpoint | undefined;
  let completed = false;
  const streams: ClientStream[] = [];
  try {
    endpoint = dst.kind === 'local' ? await openLocal(dst.path) : await openEndpoint(dst, cfg, signal, deps);
    const count = endpoint.conn.features.sameHost ? cfg.threads : cfg.streams;
    const hs = { sessionId: newSessionId(), count, token: cfg.token, fsync: cfg.fsync, signal };
    const first = await openChannel(endpoint.conn, { ...hs, index: 0 });
    const control = new ClientStream(first.ch, 0, (e) => events.error(e));
    streams.push(control);

    // The source's kind decides what to list at the destination, so list it while the source
    // is still being walked.
    const srcKind = await srcKindOf(srcAbs, filesFrom !== undefined);
    if (srcKind === 'missing') throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${src.path} does not exist`, { path: src.path });
    if (srcKind === 'other') throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${src.path} is not a file, directory or symlink`, { path: src.path });
    const probe = await control.list(endpoint.prefix, { recursive: false });
    const dstIsDir = !probe.missing && probe.entries[0]?.type === EntryType.DIRECTORY;
    if (srcKind === 'directory' && !probe.missing && !dstIsDir) {
      throw new SmartcopyError('SC_ERR_DEST_INVALID', `destination ${endpoint.display} exists and is not a directory`, { path: endpoint.display });
    }
    const prefix = endpoint.prefix;
    const root = mappingRoot(srcKind, srcAbs, prefix, dstIsDir, dst.trailingSlash);
    const [srcRes, listing] = await Promise.all([
      srcScan,
      control.list(root.listRoot, { recursive: root.recursive, hashAlgo: cfg.checksum ? 'xxhash64' : undefined }),
    ]);
    if (srcRes.rootKind === 'missing') throw new SmartcopyError('SC_ERR_VANISHED', `source ${src.path} vanished`, { path: src.path });
    reportScanErrors(srcRes.errors, src.path, acct, events);
    const mapped: Mapped = srcRes.items
      ? { items: srcRes.items.map((it) => ({ ...it, dest: joinRel(prefix, it.dest) })), listRoot: prefix, recursive: true }
      : mapSource(srcRes.rootKind, srcRes.entries, (rel) => (rel.length === 0 ? srcBuf : Buffer.concat([srcBuf, Buffer.from('/'), rel])), srcAbs, prefix, dstIsDir, dst.trailingSlash);
    const plan = makePlan(mapped.items, listingToMap(mapped.listRoot, listing.entries), mapped.listRoot, planOptions(cfg));
    reportPlanned(plan, acct, events, cfg, src.path, endpoint.display);
    if (cfg.dryRun) {
      reportDryRun(plan, acct, events);
      if (await control.bye({ keep: endpoint.recycle })) recycleChannel(endpoint.conn, control.ch);
      completed = true;
      return;
    }

    await openMoreStreams(endpoint.conn, hs, Math.min(count, Math.max(1, plan.files.length)), streams, events);
    await executePlan(plan, pushExecution(cfg, first.welcome, endpoint.conn, streams, acct, events, signal));
    if (!endpoint.conn.features.sameHost) acct.wireBytes = wireBytes(streams);
    acct.wireProbe = undefined;
    await finishStreams(streams, plan.files.length + plan.mkdirs.length > 0, signal, endpoint.recycle ? endpoint.conn : undefined);
    completed = true;
  } finally {
    if (signal.aborted) for (const s of streams) s.ch.abort();
    await endpoint?.close(completed);
  }
}

/**
 * How a push session carries out its plan, from the run's options and what the receiver offers
 * (its WELCOME). `blocks`: a shared source of file blocks (fan-out); not used for kernel copies,
 * which read nothing here. Starts the wire-byte probe of a remote session.
 */
export function pushExecution(
  cfg: Config,
  welcome: Welcome,
  conn: Connection,
  streams: ClientStream[],
  acct: Accounting,
  events: RunEvents,
  signal: AbortSignal,
  blocks?: BlockSource,
): ExecuteContext {
  // A bandwidth limit needs the bytes to pass through us, so it turns the kernel copy off.
  const native = welcome.sameHost && welcome.features.includes(FEATURE_NATIVE_COPY) && cfg.kernelCopy && !cfg.bandwidthLimit;
  const bucket = cfg.bandwidthLimit ? new TokenBucket(cfg.bandwidthLimit) : undefined;
  if (!conn.features.sameHost) acct.wireProbe = () => wireBytes(streams);
  return {
    streams,
    send: {
      hashAlgo: 'xxhash64',
      verifyAlgo: cfg.verify,
      native,
      compress: cfg.compress && !native,
      fsync: cfg.fsync,
      pool: new BufferPool(cfg.bufferSize, 4 * streams.length + 4),
      throttle: bucket ? (n) => bucket.take(n, signal) : undefined,
      blocks: native ? undefined : blocks,
    },
    acct,
    events,
    signal,
    chunks: hasChunks(welcome.features),
    resume: welcome.features.includes(FEATURE_RESUME),
    delta: cfg.delta && welcome.features.includes(FEATURE_DELTA) ? { seed: randomInt(1, 2 ** 31), blockSize: cfg.blockSize ?? 0 } : undefined,
  };
}
