import { randomInt } from 'node:crypto';
import { EntryType, MsgType, SmartcopyError, type HashAlgo, type Result } from '@smartcopy/protocol';
import {
  Applier,
  NativeBatcher,
  PathJail,
  StreamReceiver,
  DELTA_MIN_SIZE,
  metaOf,
  packedSignature,
  scanTree,
  toWireEntry,
  type ReceiverContext,
  type ScanEntry,
} from '@smartcopy/agent';
import { CHUNK_SIZE, CHUNK_THRESHOLD, type Config } from '../config.js';
import { joinRel, localRoot, openEndpoint, type Endpoint } from '../endpoints.js';
import { readFilesFrom } from '../plan/files-from.js';
import { filterListing, fromWire, listingToMap, mapSource, planOptions, toEntry, type Mapped } from '../plan/map.js';
import { makePlan, type Plan, type SourceItem } from '../plan/plan.js';
import type { Accounting, RunEvents } from '../progress/accounting.js';
import { reportDryRun, reportPlanned } from '../progress/report.js';
import { ClientStream } from '../session/client-stream.js';
import { newSessionId, openChannel, recycleChannel } from '../session/connect.js';
import type { RemoteTarget, Target } from '../targets.js';
import type { RunDeps } from '../run.js';
import { finishStreams, hasChunks, openMoreStreams, wireBytes, chunkTransferId } from './streams.js';

/** Items per READ_REQUEST and results a stream may have outstanding. */
const ITEMS_PER_REQUEST = 32;
const WINDOW = 256;

/**
 * Pull: the agent sends, this process receives with the same receiver the agent uses for a push
 * (StreamReceiver over the same frames), writing through a local Applier.
 */
export async function pull(cfg: Config, src: RemoteTarget, dst: Extract<Target, { kind: 'local' }>, acct: Accounting, events: RunEvents, signal: AbortSignal, deps: RunDeps = {}): Promise<void> {
  let endpoint: Endpoint | undefined;
  let completed = false;
  const streams: ClientStream[] = [];
  let applier: Applier | undefined;
  try {
    endpoint = await openEndpoint(src, cfg, signal, deps);
    const hs = { sessionId: newSessionId(), count: cfg.streams, token: cfg.token, fsync: cfg.fsync, signal };
    const first = await openChannel(endpoint.conn, { ...hs, index: 0 });
    const control = new ClientStream(first.ch, 0, (e) => events.error(e));
    streams.push(control);
    const hashAlgo = cfg.checksum ? 'xxhash64' : undefined;
    const remotePrefix = endpoint.prefix;

    // The local side: a jail over the destination, like the agent's.
    const { root, prefix: lp } = await localRoot(dst.path);
    const jail = await PathJail.open(root);
    const localPrefix = Buffer.from(lp);
    applier = new Applier(jail, { fsync: cfg.fsync, preserveOwner: process.getuid?.() === 0 });

    // The remote source.
    let items: SourceItem[];
    let listRoot: Buffer;
    let recursive: boolean;
    const localProbe = await scanTree(jail.resolve(localPrefix), { shallow: true, followRootLink: false }, signal);
    const dstIsDir = localProbe.rootKind === 'directory';
    if (cfg.filesFrom) {
      if (localProbe.rootKind !== 'missing' && !dstIsDir) throw new SmartcopyError('SC_ERR_DEST_INVALID', `destination ${dst.path} exists and is not a directory`);
      items = [];
      for (const m of await readFilesFrom(cfg.filesFrom)) {
        const srcRel = Buffer.from(m.src.replace(/^\/+|\/+$/g, ''));
        const dstRel = Buffer.from(m.dst.replace(/^\/+|\/+$/g, ''));
        const l = await control.list(joinRel(remotePrefix, srcRel), { recursive: true, hashAlgo });
        if (l.missing) {
          const err = new SmartcopyError('SC_ERR_NOT_FOUND', `${m.src}: listed in --files-from but does not exist on the agent`, { path: m.src });
          acct.filesFailed++;
          acct.errors.push(err);
          events.error(err);
          continue;
        }
        for (const e of filterListing(cfg, l.entries.map(fromWire))) {
          const dest = joinRel(dstRel, e.path);
          items.push({ entry: e, src: joinRel(joinRel(remotePrefix, srcRel), e.path), dest: joinRel(localPrefix, dest), display: dest.toString('utf8') });
        }
      }
      listRoot = localPrefix;
      recursive = true;
    } else {
      const probe = await control.list(remotePrefix, { recursive: false, hashAlgo });
      if (probe.missing) throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${src.display} does not exist on the agent`, { path: src.display });
      const rootType = probe.entries[0]?.type;
      const kind = rootType === EntryType.DIRECTORY ? 'directory' : rootType === EntryType.FILE || rootType === EntryType.SYMLINK ? 'file' : 'other';
      if (kind === 'other') throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${src.display} is not a file, directory or symlink`);
      if (kind === 'directory' && localProbe.rootKind !== 'missing' && !dstIsDir) {
        throw new SmartcopyError('SC_ERR_DEST_INVALID', `destination ${dst.path} exists and is not a directory`, { path: dst.path });
      }
      const listing = kind === 'directory' ? await control.list(remotePrefix, { recursive: true, hashAlgo }) : probe;
      const entries: ScanEntry[] = filterListing(cfg, listing.entries.map(fromWire));
      const mapped: Mapped = mapSource(kind, entries, (rel) => joinRel(remotePrefix, rel), src.path, localPrefix, dstIsDir, dst.trailingSlash);
      ({ items, listRoot, recursive } = mapped);
    }

    const localList = await scanTree(jail.resolve(listRoot), { shallow: !recursive, hashAlgo, followRootLink: false, hideParts: true }, signal);
    const dstMap = listingToMap(listRoot, localList.entries.map(toEntry));
    const plan = makePlan(items, dstMap, listRoot, planOptions(cfg));
    reportPlanned(plan, acct, events, cfg, src.display, dst.path);
    if (cfg.dryRun) {
      reportDryRun(plan, acct, events);
      if (await control.bye({ keep: endpoint.recycle })) recycleChannel(endpoint.conn, control.ch);
      completed = true;
      return;
    }
    await openMoreStreams(endpoint.conn, hs, Math.min(cfg.streams, Math.max(1, plan.files.length)), streams, events);
    acct.wireProbe = () => wireBytes(streams);
    await executePull(plan, { cfg, streams, control, applier, acct, events, signal, chunks: hasChunks(first.welcome.features) });
    acct.wireBytes = wireBytes(streams);
    acct.wireProbe = undefined;
    await finishStreams(streams, plan.files.length > 0, signal, endpoint.recycle ? endpoint.conn : undefined);
    completed = true;
  } finally {
    if (signal.aborted) for (const s of streams) s.ch.abort();
    await applier?.discardAll().catch(() => {});
    await endpoint?.close(completed);
  }
}

interface PullContext {
  cfg: Config;
  streams: ClientStream[];
  control: ClientStream;
  applier: Applier;
  acct: Accounting;
  events: RunEvents;
  signal: AbortSignal;
  chunks: boolean;
}

type PullItem = {
  item: SourceItem;
  fileId: number;
  chunk: { offset: number; length: number; tracker: { left: number; count: number; transferId: string; resumed: boolean; failed?: SmartcopyError } } | undefined;
  /** --delta: sent as delta ops against our current copy */
  delta?: boolean;
};

function toResult(r: { fileId?: number; ok: boolean; error?: unknown; offset?: number; bytesWritten?: number; requestId?: number }): Result {
  return {
    fileId: r.fileId ?? 0,
    ok: r.ok,
    offset: r.offset ?? 0,
    bytesWritten: r.bytesWritten ?? 0,
    requestId: r.requestId ?? 0,
    error: (r.error as Result['error']) ?? null,
  };
}

function errOf(r: Result, path: string): SmartcopyError {
  return r.error ? SmartcopyError.fromWire(r.error.code, r.error.message, path) : new SmartcopyError('SC_ERR_INTERNAL', 'failed without details', { path });
}

async function local(what: () => Promise<void>, onError: (e: SmartcopyError) => void): Promise<boolean> {
  try {
    await what();
    return true;
  } catch (e) {
    onError(e instanceof SmartcopyError ? e : new SmartcopyError('SC_ERR_IO', String(e)));
    return false;
  }
}

async function executePull(plan: Plan, ctx: PullContext): Promise<void> {
  const { applier, acct, events, cfg } = ctx;
  const report = (e: SmartcopyError): void => {
    acct.errors.push(e);
    events.error(e);
  };
  const fileFailed = (it: SourceItem, e: SmartcopyError): void => {
    acct.filesFailed++;
    acct.errors.push(e);
    events.file({ path: it.display, action: 'failed', bytes: 0, error: e });
    events.error(e);
  };
  for (const d of plan.deletes) {
    if (ctx.signal.aborted) return;
    if ((await local(() => applier.remove(d.dest), report)) && !d.typeChange) {
      acct.deleted++;
      events.file({ path: d.display, action: 'deleted', bytes: 0 });
    }
  }
  for (const it of plan.mkdirs) {
    if (await local(() => applier.mkdir(it.dest, metaOf(toEntry(it.entry))), report)) acct.dirsCreated++;
  }
  for (const it of plan.symlinks) {
    if (await local(() => applier.symlink(it.dest, it.entry.linkTarget ?? Buffer.alloc(0), metaOf(toEntry(it.entry))), (e) => fileFailed(it, e))) {
      acct.filesCopied++;
      events.file({ path: it.display, action: 'linked', bytes: 0 });
    }
  }

  // Each stream gets a receiver that writes locally and reports outcomes to the stream's waiters.
  const rctx: ReceiverContext = { applier, sameHost: false, readOnly: false, batcher: new NativeBatcher(applier), stats: { files: 0, bytes: 0 } };
  for (const s of ctx.streams) {
    const receiver = new StreamReceiver(s.ch, rctx, (r) => s.deliver(toResult(r)));
    s.extra = (f) => receiver.handle(f);
    void s.ch.whenClosed().then(() => receiver.abandon());
  }

  const deltaSeed = cfg.delta ? randomInt(1, 2 ** 31) : undefined;
  const queue: PullItem[] = [];
  /** chunked files whose every chunk was kept by an earlier run: only the commit is left */
  const resumedWhole: PullItem[] = [];
  let nextId = 1;
  for (const it of plan.files) {
    const fileId = nextId++;
    const size = it.entry.size;
    if (ctx.chunks && size >= CHUNK_THRESHOLD) {
      const count = Math.ceil(size / CHUNK_SIZE);
      const tracker = { left: count, count, transferId: chunkTransferId(it.dest, size, it.entry.mtimeSec, it.entry.mtimeNsec), resumed: false };
      // Resume: chunks verified into our .part by an interrupted run of the same source file
      // (the transfer id binds path, size and mtime) are not asked for again; the whole file is
      // then checked against the agent's hash of its source at commit.
      const kept = new Set((await applier.verifiedChunks(it.dest, tracker.transferId).catch(() => [])).map((r) => `${r.offset}:${r.length}`));
      for (let off = 0; off < size; off += CHUNK_SIZE) {
        const length = Math.min(CHUNK_SIZE, size - off);
        if (kept.has(`${off}:${length}`)) {
          tracker.left--;
          tracker.resumed = true;
          acct.bytesResumed += length;
          continue;
        }
        queue.push({ item: it, fileId, chunk: { offset: off, length, tracker } });
      }
      if (tracker.left === 0) resumedWhole.push({ item: it, fileId, chunk: { offset: 0, length: 0, tracker } });
    } else queue.push({ item: it, fileId, chunk: undefined, delta: deltaSeed !== undefined && it.basisSize !== undefined && it.basisSize > 0 && size >= DELTA_MIN_SIZE });
  }
  queue.reverse();

  const commit = async (w: PullItem): Promise<void> => {
    const t = w.chunk!.tracker;
    let verify: { algo: HashAlgo; expected: Buffer } | undefined;
    if (cfg.verify || t.resumed) {
      const algo: HashAlgo = cfg.verify ?? 'xxhash64';
      const l = await ctx.control.list(w.item.src, { recursive: false, hashAlgo: algo });
      const h = l.entries[0]?.hash;
      if (!h || h.length === 0) throw new SmartcopyError('SC_ERR_VANISHED', 'the agent could not hash the source to check the file', { path: w.item.display });
      verify = { algo, expected: Buffer.from(h) };
    }
    await applier.commitShared(w.item.dest, metaOf(toEntry(w.item.entry)), t.transferId, { chunkCount: t.count, verify });
  };

  /** A delta pull: sign our copy, ask for ops against it; any failure sends the file whole. */
  const pullDelta = async (s: ClientStream, w: PullItem): Promise<void> => {
    const it = w.item;
    const key = `${w.fileId}:0`;
    const res = s.expect(key);
    try {
      const basis = await applier.jail.ensureParent(it.dest, { create: false });
      const { params, sums } = await packedSignature(basis, it.display, deltaSeed!, cfg.blockSize);
      const requestId = s.newRequestId();
      s.ch.send(
        MsgType.READ_REQUEST,
        {
          requestId,
          hashAlgo: 'xxhash64',
          verifyAlgo: cfg.verify ?? '',
          compress: cfg.compress,
          bandwidthLimit: cfg.bandwidthLimit ?? 0,
          items: [
            {
              fileId: w.fileId,
              entry: toWireEntry(it.entry, it.src),
              destPath: it.dest,
              delta: true,
              deltaSeed: deltaSeed!,
              deltaBlockSize: params.blockSize,
              deltaStrongLength: params.strongLength,
              deltaBasisSize: params.basisSize,
            },
          ],
        },
        sums,
      );
    } catch (e) {
      s.settle(key, e instanceof SmartcopyError ? e : new SmartcopyError('SC_ERR_IO', String(e), { path: it.display }));
    }
    const r = await res;
    if (r.ok) {
      acct.filesCopied++;
      acct.bytesDone += it.entry.size;
      events.file({ path: it.display, action: 'copied', bytes: it.entry.size });
    } else if (!s.failure) {
      events.error(new SmartcopyError('SC_ERR_CHECKSUM_MISMATCH', `${it.display}: ${errOf(r, it.display).message}; sending it whole`, { path: it.display }));
      queue.push({ item: it, fileId: nextId++, chunk: undefined, delta: false });
    } else fileFailed(it, errOf(r, it.display));
  };

  const worker = async (s: ClientStream): Promise<void> => {
    const waits: Promise<void>[] = [];
    // files redone whole after a failed delta come back to the queue: go round until it stays empty
    for (;;) {
      while (queue.length > 0 && !ctx.signal.aborted && !s.failure) {
        while (s.inFlight >= WINDOW) await s.oneSettled();
        if (queue[queue.length - 1]?.delta) {
          // one delta file per request: its payload is the signature of our copy
          const w = queue.pop()!;
          waits.push(pullDelta(s, w));
          await new Promise<void>((r) => setImmediate(r));
          continue;
        }
        const batch: PullItem[] = [];
        while (batch.length < ITEMS_PER_REQUEST && queue.length > 0 && !queue[queue.length - 1]!.delta && s.inFlight + batch.length < WINDOW) batch.push(queue.pop()!);
        if (batch.length === 0) continue;
        for (const w of batch) {
          const it = w.item;
          waits.push(
            s.expect(`${w.fileId}:${w.chunk?.offset ?? 0}`).then(async (r) => {
              if (!w.chunk) {
                if (r.ok) {
                  acct.filesCopied++;
                  acct.bytesDone += it.entry.size;
                  events.file({ path: it.display, action: 'copied', bytes: it.entry.size });
                } else fileFailed(it, errOf(r, it.display));
                return;
              }
              const t = w.chunk.tracker;
              if (r.ok) acct.bytesDone += w.chunk.length;
              else t.failed ??= errOf(r, it.display);
              if (--t.left > 0) return;
              if (t.failed) return fileFailed(it, t.failed);
              await commit(w).then(
                () => {
                  acct.filesCopied++;
                  events.file({ path: it.display, action: 'copied', bytes: it.entry.size, chunks: t.count });
                },
                (e: SmartcopyError) => fileFailed(it, e),
              );
            }),
          );
        }
        const requestId = s.newRequestId();
        s.ch.send(MsgType.READ_REQUEST, {
          requestId,
          hashAlgo: 'xxhash64',
          verifyAlgo: cfg.verify ?? '',
          compress: cfg.compress,
          bandwidthLimit: cfg.bandwidthLimit ?? 0,
          items: batch.map((w) => ({
            fileId: w.fileId,
            entry: toWireEntry(w.item.entry, w.item.src),
            destPath: w.item.dest,
            chunk: w.chunk !== undefined,
            offset: w.chunk?.offset ?? 0,
            length: w.chunk?.length ?? 0,
            transferId: w.chunk?.tracker.transferId ?? '',
          })),
        });
        events.tick();
        // Let the other streams take their share before this one asks for more.
        await new Promise<void>((r) => setImmediate(r));
      }
      await Promise.all(waits);
      if (queue.length === 0 || ctx.signal.aborted || s.failure) break;
    }
  };
  const finishResumed = resumedWhole.map((w) =>
    commit(w).then(
      () => {
        acct.filesCopied++;
        events.file({ path: w.item.display, action: 'copied', bytes: w.item.entry.size, chunks: w.chunk!.tracker.count });
      },
      (e: SmartcopyError) => fileFailed(w.item, e),
    ),
  );
  await Promise.all([...finishResumed, ...ctx.streams.map((s) => worker(s))]);
  for (const w of queue.splice(0)) {
    if (!w.chunk || w.chunk.offset === 0) {
      acct.filesFailed++;
      events.file({ path: w.item.display, action: 'failed', bytes: 0, error: new SmartcopyError(ctx.signal.aborted ? 'SC_ERR_INTERRUPTED' : 'SC_ERR_CONNECTION_CLOSED', 'not transferred', { path: w.item.display }) });
    }
  }
  acct.bytesMatched += rctx.stats.deltaMatched ?? 0;
  acct.bytesLiteral += rctx.stats.deltaLiteral ?? 0;
  if (ctx.signal.aborted) return;
  for (const d of plan.dirMeta) await local(() => applier.setDirMeta(d.dest, metaOf(toEntry(d.entry))), report);
}
