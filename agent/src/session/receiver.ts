import {
  Compression,
  MsgType,
  ProtocolError,
  SmartcopyError,
  createHasher,
  fromSystemError,
  HandlerTable,
  isHashAlgo,
  lz4Decompress,
  type ChunkBegin,
  type ChunkEnd,
  type Commit,
  type Data,
  type Delete,
  type Entry,
  type FileBegin,
  type FileEnd,
  type Finish,
  type Frame,
  type HashAlgo,
  type Hasher,
  type Mkdir,
  type DeltaOps,
  type SignatureRequest,
  PatchPlanner,
  readDeltaOpsFrame,
  type NativeBatch,
  type Symlink,
} from '@smartcopy/protocol';
import fs from 'node:fs';
import type { Applier, FileMeta, PartFile, SharedPart } from '../apply/index.js';
import { sendSignature } from '../transfer/delta.js';
import { sharedPool } from '../util/index.js';
import { NativeBatcher } from './native-batcher.js';
import type { Channel } from './channel.js';
import { displayOf, errorInfo, resultError, resultOk, type ResultInit } from './results.js';

/** Bytes of DATA we accept ahead of the disk before pausing the stream (backpressure). */
const MAX_PENDING_BYTES = 32 * 1024 * 1024;
/** Files we accept ahead of the disk (small native copies) before pausing the stream. */
const MAX_PENDING_OPS = 4096;

/** What every receiving stream of one session shares. */
export interface ReceiverContext {
  applier: Applier;
  /** the sender may name source paths for the receiver to copy itself (same host only) */
  sameHost: boolean;
  readOnly: boolean;
  batcher: NativeBatcher;
  /** bytes written to disk, and of those the delta bytes rebuilt from the basis or sent as literals */
  stats: { files: number; bytes: number; deltaMatched?: number; deltaLiteral?: number };
}

interface FileState {
  kind: 'file';
  begin: FileBegin;
  rel: Uint8Array;
  meta: FileMeta;
  native: Buffer | undefined;
  part: Promise<PartFile> | undefined;
  hasher: Promise<Hasher> | undefined;
  chain: Promise<void>;
  received: number;
  error: SmartcopyError | undefined;
  /** delta: the current file (basis) and the plan that turns ops into writes */
  delta: { basis: Promise<fs.promises.FileHandle>; planner: PatchPlanner; matched: number; literal: number } | undefined;
}

interface ChunkState {
  begin: ChunkBegin;
  shared: Promise<SharedPart>;
  hasher: Promise<Hasher> | undefined;
  chain: Promise<void>;
  received: number;
  error: SmartcopyError | undefined;
}

export function metaOf(e: Entry): FileMeta {
  return { size: e.size, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, mode: e.mode, uid: e.uid, gid: e.gid };
}

/** A hasher for a name the peer sent; an unknown name is a protocol error, not a crash. */
function hasherFor(name: string): Promise<Hasher> {
  if (!isHashAlgo(name)) throw new ProtocolError('SC_ERR_MALFORMED_FRAME', `unknown hash algorithm ${JSON.stringify(name.slice(0, 40))}`);
  const p = createHasher(name);
  p.catch(() => {}); // awaited where it is used; never an unhandled rejection
  return p;
}

function requireEntry(e: Entry | null, what: string): Entry {
  if (!e) throw new ProtocolError('SC_ERR_MALFORMED_FRAME', `${what} frame without an entry`);
  return e;
}

/**
 * The receiving end of one stream: turns FILE/CHUNK/COMMIT/MKDIR/SYMLINK/DELETE/FINISH frames into
 * Applier calls and answers each with a RESULT. Work for different files overlaps; frames of one
 * file are applied in order.
 */
export class StreamReceiver {
  private readonly files = new Map<number, FileState>();
  private readonly chunks = new Map<number, ChunkState>();
  private pendingBytes = 0;
  private pendingOps = 0;
  private paused = false;

  /**
   * @param report where outcomes go; by default a RESULT frame back to the sender (push). A
   * pulling client passes its own callback and keeps the outcomes local.
   */
  constructor(
    private readonly ch: Channel,
    private readonly ctx: ReceiverContext,
    private readonly report?: (result: ResultInit) => void,
  ) {}

  /** The frames a receiving stream handles, by type. */
  private static readonly frames = new HandlerTable<StreamReceiver>('receiving')
    .on(MsgType.FILE_BEGIN, (f, r) => r.fileBegin(f.header))
    .on(MsgType.DATA, (f, r) => r.data(f.header, f.payload))
    .on(MsgType.FILE_END, (f, r) => r.fileEnd(f.header))
    .on(MsgType.CHUNK_BEGIN, (f, r) => r.chunkBegin(f.header))
    .on(MsgType.CHUNK_END, (f, r) => r.chunkEnd(f.header))
    .on(MsgType.COMMIT, (f, r) => r.commit(f.header))
    .on(MsgType.MKDIR, (f, r) => r.op(f.header.requestId, () => r.mkdir(f.header)))
    .on(MsgType.SYMLINK, (f, r) => r.op(f.header.requestId, () => r.symlink(f.header)))
    .on(MsgType.DELETE, (f, r) => r.op(f.header.requestId, () => r.remove(f.header)))
    .on(MsgType.FINISH, (f, r) => r.op(f.header.requestId, () => r.finishDirs(f.header)))
    .on(MsgType.NATIVE_BATCH, (f, r) => r.nativeBatch(f.header))
    .on(MsgType.SIGNATURE_REQUEST, (f, r) => r.signatureRequest(f.header))
    .on(MsgType.DELTA_OPS, (f, r) => r.deltaOps(f.header, f.payload));

  /** Returns true when the frame was a receiver frame and has been taken care of. */
  handle(f: Frame): boolean {
    if (!StreamReceiver.frames.has(f.type)) return false;
    void StreamReceiver.frames.dispatch(f, this);
    return true;
  }


  private checkWritable(): void {
    if (this.ctx.readOnly) {
      throw new SmartcopyError('SC_ERR_READ_ONLY', 'the agent is read-only (--read-only); it refuses writes');
    }
  }

  // ---- flow control -------------------------------------------------------------------------

  private track(bytes: number, ops: number): void {
    this.pendingBytes += bytes;
    this.pendingOps += ops;
    if (!this.paused && (this.pendingBytes > MAX_PENDING_BYTES || this.pendingOps > MAX_PENDING_OPS)) {
      this.paused = true;
      this.ch.stream.pause();
    } else if (this.paused && this.pendingBytes <= MAX_PENDING_BYTES / 2 && this.pendingOps <= MAX_PENDING_OPS / 2) {
      this.paused = false;
      this.ch.stream.resume();
    }
  }

  private reply(header: ResultInit): void {
    if (this.report) this.report(header);
    else if (this.ch.isOpen) this.ch.send(MsgType.RESULT, header);
  }

  // ---- whole files --------------------------------------------------------------------------

  private fileBegin(h: FileBegin): void {
    this.checkWritable();
    const entry = requireEntry(h.entry, 'FILE_BEGIN');
    if (this.files.has(h.fileId)) throw new ProtocolError('SC_ERR_PROTOCOL', `file id ${h.fileId} is already open`);
    const meta = metaOf(entry);
    const st: FileState = {
      kind: 'file',
      begin: h,
      rel: entry.path,
      meta,
      native: undefined,
      part: undefined,
      hasher: undefined,
      chain: Promise.resolve(),
      received: 0,
      error: undefined,
      delta: undefined,
    };
    if (h.delta) this.beginDelta(st, h, entry);
    if (h.nativeSource.length > 0) {
      if (!this.ctx.sameHost) {
        throw new ProtocolError('SC_ERR_PROTOCOL', 'native copy from a source path is only allowed on the same host');
      }
      st.native = Buffer.from(h.nativeSource);
    } else {
      const part = this.ctx.applier.createFile(entry.path, meta, transferIdOf(h.fileId, this.ch));
      part.catch((e: unknown) => (st.error ??= fromSystemError(e, 'create', displayOf(entry.path))));
      st.part = part;
      if (h.hashAlgo) st.hasher = hasherFor(h.hashAlgo);
    }
    this.files.set(h.fileId, st);
    this.track(0, 1);
  }

  private data(h: Data, payload: Buffer): void {
    const st = this.files.get(h.fileId);
    if (st) {
      if (st.native) throw new ProtocolError('SC_ERR_PROTOCOL', `DATA for native-copy file ${h.fileId}`);
      this.dataInto(st, h, payload);
      return;
    }
    const cs = this.chunks.get(h.fileId);
    if (!cs) throw new ProtocolError('SC_ERR_PROTOCOL', `DATA for file id ${h.fileId}, which is not open on this stream`);
    this.dataInto(cs, h, payload);
  }

  private dataInto(st: FileState | ChunkState, h: Data, payload: Buffer): void {
    const size = h.compression === Compression.NONE ? payload.length : h.rawLength;
    this.track(size, 0);
    st.received += size;
    const write = async (): Promise<void> => {
      if (st.error) return;
      const raw = h.compression === Compression.LZ4 ? await lz4Decompress(payload, h.rawLength) : payload;
      if (h.compression !== Compression.NONE && h.compression !== Compression.LZ4) {
        throw new ProtocolError('SC_ERR_MALFORMED_FRAME', `unknown compression ${h.compression}`);
      }
      if (st.hasher) (await st.hasher).update(raw);
      if ('kind' in st) await (await st.part!).write(raw, h.offset);
      else await (await st.shared).write(raw, h.offset);
    };
    st.chain = st.chain
      .then(write)
      .catch((e: unknown) => {
        st.error ??= fromSystemError(e, 'write');
      })
      .finally(() => this.track(-size, 0));
  }

  private fileEnd(h: FileEnd): void {
    const st = this.files.get(h.fileId);
    if (!st) throw new ProtocolError('SC_ERR_PROTOCOL', `FILE_END for file id ${h.fileId}, which is not open`);
    this.files.delete(h.fileId);
    if (st.delta) {
      const d = st.delta;
      st.chain = st.chain
        .then(() => {
          if (!st.error) d.planner.finish();
        })
        .catch((e: unknown) => {
          st.error ??= e instanceof SmartcopyError ? e : fromSystemError(e, 'apply delta', displayOf(st.rel));
        })
        .finally(() => d.basis.then((fh) => fh.close()).catch(() => {}));
    }
    const verify = st.begin.verify && h.verifyHash.length > 0
      ? { algo: (st.begin.verifyAlgo || 'xxhash64') as HashAlgo, expected: Buffer.from(h.verifyHash) }
      : undefined;
    if (st.native) {
      this.ctx.batcher
        .add({ src: st.native, rel: st.rel, meta: st.meta, transferId: transferIdOf(h.fileId, this.ch), verify })
        .then(
          (err) => {
            if (err) this.reply(resultError(h.fileId, err));
            else {
              this.ctx.stats.files++;
              this.ctx.stats.bytes += st.meta.size;
              this.reply(resultOk(h.fileId, st.meta.size));
            }
          },
          (err: unknown) => this.reply(resultError(h.fileId, fromSystemError(err, 'copy', displayOf(st.rel)))),
        )
        .finally(() => this.track(0, -1));
      return;
    }
    st.chain
      .then(async () => {
        const part = await st.part!;
        if (h.aborted) {
          await part.discard();
          st.error ??= new SmartcopyError('SC_ERR_VANISHED', 'the sender could not read the whole file', { path: displayOf(st.rel) });
        }
        if (!st.error && st.received !== st.meta.size) {
          st.error = new SmartcopyError('SC_ERR_PROTOCOL', `received ${st.received} bytes, expected ${st.meta.size}`, { path: displayOf(st.rel) });
        }
        if (!st.error && st.hasher) {
          const got = (await st.hasher).digest();
          if (!got.equals(h.hash)) {
            st.error = new SmartcopyError('SC_ERR_CHECKSUM_MISMATCH', 'content hash mismatch after transfer; the file was not replaced', { path: displayOf(st.rel) });
          }
        }
        if (st.error) {
          await part.discard().catch(() => {});
          throw st.error;
        }
        await part.commit({ verify });
        this.ctx.stats.files++;
        this.ctx.stats.bytes += st.meta.size;
        this.reply(resultOk(h.fileId, st.meta.size));
      })
      .catch(async (e: unknown) => {
        if (st.part) await st.part.then((p) => p.discard()).catch(() => {});
        this.reply(resultError(h.fileId, fromSystemError(e, 'write', displayOf(st.rel))));
      })
      .finally(() => this.track(0, -1));
  }

  // ---- delta ------------------------------------------------------------------------------

  /** SIGNATURE_REQUEST (push): the signature of our current file, as SIGNATURE frames. */
  private signatureRequest(h: SignatureRequest): void {
    this.checkWritable();
    this.track(0, 1);
    this.ctx.applier.jail
      .ensureParent(h.path, { create: false })
      .then((abs) => sendSignature(this.ch, h.fileId, abs, displayOf(h.path), h.seed, h.blockSize || undefined))
      .catch((e: unknown) => this.reply(resultError(h.fileId, e instanceof SmartcopyError ? e : fromSystemError(e, 'read', displayOf(h.path)))))
      .finally(() => this.track(0, -1));
  }

  private beginDelta(st: FileState, h: FileBegin, entry: Entry): void {
    if (h.nativeSource.length > 0) throw new ProtocolError('SC_ERR_MALFORMED_FRAME', 'a delta file cannot also be a native copy');
    const display = displayOf(entry.path);
    const basis = this.ctx.applier.jail.ensureParent(entry.path, { create: false }).then(async (abs) => {
      const fh = await fs.promises.open(abs, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0)).catch((e: unknown) => {
        throw fromSystemError(e, 'open basis of', display);
      });
      const size = (await fh.stat()).size;
      if (size !== h.deltaBasisSize) {
        await fh.close();
        throw new SmartcopyError('SC_ERR_CHECKSUM_MISMATCH', `${display}: changed since its signature was taken (${size} vs ${h.deltaBasisSize} bytes); it is sent whole`, { path: display });
      }
      return fh;
    });
    basis.catch((e: unknown) => (st.error ??= e instanceof SmartcopyError ? e : fromSystemError(e, 'open basis of', display)));
    st.delta = {
      basis,
      planner: new PatchPlanner({ basisSize: h.deltaBasisSize, blockSize: h.deltaBlockSize, expectedSize: entry.size }),
      matched: 0,
      literal: 0,
    };
  }

  /** DELTA_OPS: copy runs from the basis and literals, written in order into the .part. */
  private deltaOps(h: DeltaOps, payload: Buffer): void {
    const st = this.files.get(h.fileId);
    if (!st?.delta) throw new ProtocolError('SC_ERR_PROTOCOL', `DELTA_OPS for file id ${h.fileId}, which is not a delta file on this stream`);
    const d = st.delta;
    this.track(payload.length, 0);
    st.chain = st.chain
      .then(async () => {
        if (st.error) return;
        let literals = payload;
        if (h.compression === Compression.LZ4) literals = await lz4Decompress(payload, h.rawLength);
        else if (h.compression !== Compression.NONE) throw new ProtocolError('SC_ERR_MALFORMED_FRAME', `unknown compression ${h.compression}`);
        const batch = readDeltaOpsFrame(h, literals);
        const steps = d.planner.plan(batch.ops, batch.literals);
        const part = await st.part!;
        const fh = await d.basis;
        const hasher = await st.hasher!;
        for (const step of steps) {
          if (step.kind === 'literal') {
            hasher.update(step.data);
            await part.write(step.data, step.outOffset);
            d.literal += step.data.length;
            this.ctx.stats.deltaLiteral = (this.ctx.stats.deltaLiteral ?? 0) + step.data.length;
            st.received += step.data.length;
            continue;
          }
          // a copy run: read the basis in pooled pieces, hash in order, write positionally
          const buf = sharedPool().acquire();
          try {
            for (let done = 0; done < step.length; ) {
              const n = Math.min(buf.length, step.length - done);
              const { bytesRead } = await fh.read(buf, 0, n, step.basisOffset + done);
              if (bytesRead !== n) throw new SmartcopyError('SC_ERR_CHECKSUM_MISMATCH', 'the basis shrank while it was being patched', { path: displayOf(st.rel) });
              const piece = buf.subarray(0, n);
              hasher.update(piece);
              await part.write(piece, step.outOffset + done);
              done += n;
            }
          } finally {
            sharedPool().release(buf);
          }
          d.matched += step.length;
          this.ctx.stats.deltaMatched = (this.ctx.stats.deltaMatched ?? 0) + step.length;
          st.received += step.length;
        }
      })
      .catch((e: unknown) => {
        st.error ??= e instanceof SmartcopyError ? e : fromSystemError(e, 'apply delta', displayOf(st.rel));
      })
      .finally(() => this.track(-payload.length, 0));
  }

  // ---- many small files on the same host --------------------------------------------------

  private nativeBatch(h: NativeBatch): void {
    this.checkWritable();
    if (!this.ctx.sameHost) throw new ProtocolError('SC_ERR_PROTOCOL', 'native copy from a source path is only allowed on the same host');
    if (h.sources.length !== h.entries.length) throw new ProtocolError('SC_ERR_MALFORMED_FRAME', 'NATIVE_BATCH needs one source per entry');
    const items = h.entries.map((e, i) => ({
      src: Buffer.from(h.sources[i]!),
      rel: e.path,
      meta: metaOf(e),
      transferId: transferIdOf(h.firstFileId + i, this.ch),
    }));
    this.track(0, items.length);
    this.ctx.applier
      .nativeCopyBatch(items)
      .then(
        (results) => {
          const failed: number[] = [];
          const errors: ReturnType<typeof errorInfo>[] = [];
          results.forEach((err, i) => {
            if (err) {
              failed.push(i);
              errors.push(errorInfo(err));
            } else {
              this.ctx.stats.files++;
              this.ctx.stats.bytes += items[i]!.meta.size;
            }
          });
          return { failed, errors };
        },
        (e: unknown) => {
          const info = errorInfo(fromSystemError(e, 'copy'));
          return { failed: items.map((_, i) => i), errors: items.map(() => info) };
        },
      )
      .then(({ failed, errors }) => {
        if (this.ch.isOpen) this.ch.send(MsgType.BATCH_RESULT, { firstFileId: h.firstFileId, count: items.length, failed, errors });
      })
      .finally(() => this.track(0, -items.length));
  }

  // ---- large files in chunks ------------------------------------------------------------------

  private chunkBegin(h: ChunkBegin): void {
    this.checkWritable();
    const entry = requireEntry(h.entry, 'CHUNK_BEGIN');
    if (this.chunks.has(h.fileId)) throw new ProtocolError('SC_ERR_PROTOCOL', `a chunk of file id ${h.fileId} is already open on this stream`);
    if (!h.transferId || !/^[A-Za-z0-9_-]{1,64}$/.test(h.transferId)) {
      throw new ProtocolError('SC_ERR_MALFORMED_FRAME', 'CHUNK_BEGIN needs a transfer id of 1-64 letters, digits, - or _');
    }
    if (h.offset + h.length > entry.size) throw new ProtocolError('SC_ERR_MALFORMED_FRAME', 'chunk lies beyond the end of the file');
    const meta = metaOf(entry);
    const shared = this.ctx.applier.openShared(entry.path, meta, h.transferId);
    const cs: ChunkState = {
      begin: h,
      shared,
      hasher: h.hashAlgo && h.nativeSource.length === 0 ? hasherFor(h.hashAlgo) : undefined,
      chain: shared.then(() => {}),
      received: 0,
      error: undefined,
    };
    cs.chain = cs.chain.catch((e: unknown) => {
      cs.error ??= fromSystemError(e, 'create', displayOf(entry.path));
    });
    this.track(0, 1);
    if (h.nativeSource.length > 0) {
      if (!this.ctx.sameHost) throw new ProtocolError('SC_ERR_PROTOCOL', 'native copy from a source path is only allowed on the same host');
      const src = Buffer.from(h.nativeSource);
      cs.chain = cs.chain.then(async () => {
        if (cs.error) return;
        try {
          await (await shared).copyRangeFrom(src, h.offset, h.length);
          cs.received = h.length;
        } catch (e) {
          cs.error = fromSystemError(e, 'copy', displayOf(entry.path));
        }
      });
    }
    this.chunks.set(h.fileId, cs);
  }

  private chunkEnd(h: ChunkEnd): void {
    const cs = this.chunks.get(h.fileId);
    if (!cs) throw new ProtocolError('SC_ERR_PROTOCOL', `CHUNK_END for file id ${h.fileId}, which has no open chunk`);
    this.chunks.delete(h.fileId);
    const b = cs.begin;
    const path = displayOf(b.entry!.path);
    cs.chain
      .then(async () => {
        const shared = await cs.shared.catch(() => undefined);
        try {
          if (!cs.error && cs.received !== b.length) {
            cs.error = new SmartcopyError('SC_ERR_PROTOCOL', `chunk at ${b.offset}: received ${cs.received} bytes, expected ${b.length}`, { path });
          }
          let hash = Buffer.alloc(0);
          if (!cs.error && cs.hasher) {
            hash = (await cs.hasher).digest();
            if (!hash.equals(h.hash)) cs.error = new SmartcopyError('SC_ERR_CHECKSUM_MISMATCH', `chunk at ${b.offset} failed its hash check`, { path });
          }
          if (cs.error) throw cs.error;
          await shared!.recordChunk(b.offset, b.length, hash);
          this.ctx.stats.bytes += b.length;
          this.reply({ ...resultOk(h.fileId, b.length), offset: b.offset });
        } finally {
          await shared?.release();
        }
      })
      .catch((e: unknown) => this.reply({ ...resultError(h.fileId, fromSystemError(e, 'write', path)), offset: b.offset }))
      .finally(() => this.track(0, -1));
  }

  private commit(h: Commit): void {
    this.checkWritable();
    const entry = requireEntry(h.entry, 'COMMIT');
    this.track(0, 1);
    const verify = h.verifyHash.length > 0 ? { algo: (h.verifyAlgo || 'xxhash64') as HashAlgo, expected: Buffer.from(h.verifyHash) } : undefined;
    this.ctx.applier
      .commitShared(entry.path, metaOf(entry), h.transferId, { chunkCount: h.chunkCount, verify, chunksHash: h.chunksHash })
      .then(
        () => {
          this.ctx.stats.files++;
          this.reply(resultOk(h.fileId, 0));
        },
        (e: unknown) => this.reply(resultError(h.fileId, fromSystemError(e, 'commit', displayOf(entry.path)))),
      )
      .finally(() => this.track(0, -1));
  }

  // ---- directory operations -------------------------------------------------------------------

  private op(requestId: number, fn: () => Promise<void>): void {
    this.checkWritable();
    this.track(0, 1);
    fn()
      .then(
        () => this.reply({ requestId, ok: true }),
        (e: unknown) => this.reply({ requestId, ok: false, error: errorInfo(fromSystemError(e, 'apply')) }),
      )
      .finally(() => this.track(0, -1));
  }

  private async mkdir(h: Mkdir): Promise<void> {
    const e = requireEntry(h.entry, 'MKDIR');
    await this.ctx.applier.mkdir(e.path, metaOf(e));
  }

  private async symlink(h: Symlink): Promise<void> {
    const e = requireEntry(h.entry, 'SYMLINK');
    await this.ctx.applier.symlink(e.path, e.linkTarget, metaOf(e));
  }

  private async remove(h: Delete): Promise<void> {
    await this.ctx.applier.remove(h.path);
  }

  private async finishDirs(h: Finish): Promise<void> {
    for (const d of h.directories) await this.ctx.applier.setDirMeta(d.path, metaOf(d));
  }

  /** The stream ended or failed: remove .part files of whole files that never finished. */
  async abandon(): Promise<void> {
    const parts = [...this.files.values()].map((s) => s.part).filter((p): p is Promise<PartFile> => p !== undefined);
    this.files.clear();
    await Promise.all(parts.map((p) => p.then((pf) => pf.discard()).catch(() => {})));
    const chunks = [...this.chunks.values()];
    this.chunks.clear();
    await Promise.all(chunks.map((c) => c.shared.then((s) => s.release()).catch(() => {})));
  }
}

const channelIds = new WeakMap<Channel, string>();
let channelSeq = 0;
/** Unique temp-name tag for whole files: distinct per stream and file id. */
function transferIdOf(fileId: number, ch: Channel): string {
  let id = channelIds.get(ch);
  if (!id) {
    id = `${process.pid.toString(36)}${(++channelSeq).toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
    channelIds.set(ch, id);
  }
  return `${id}-${fileId}`;
}
