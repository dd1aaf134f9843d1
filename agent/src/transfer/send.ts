import fs from 'node:fs';
import {
  Compression,
  MsgType,
  SmartcopyError,
  createHasher,
  fromSystemError,
  hashBuffer,
  initCodecs,
  xxh64,
  lz4Compress,
  shouldSendCompressed,
  type Entry,
  type HashAlgo,
  type Hasher,
} from '@smartcopy/protocol';
import type { BufferPool } from '../util/index.js';
import type { Channel } from '../session/channel.js';
import { hashFile } from '../verify/index.js';
import type { BlockSource } from './block-cache.js';

/** How a sender moves file content. Resolved once per session from config and features. */
export interface SendOptions {
  /** hash of the bytes on the wire, checked by the receiver before the rename */
  hashAlgo: HashAlgo;
  /** --verify: strong hash of the source, compared with a re-read of the written file */
  verifyAlgo: HashAlgo | undefined;
  /** same host: let the receiver copy from the source path with the kernel */
  native: boolean;
  /** LZ4 per block when it pays (--compress) */
  compress: boolean;
  fsync: boolean;
  pool: BufferPool;
  /** --bandwidth-limit: waits until `bytes` may go on the wire */
  throttle?: (bytes: number) => Promise<void>;
  /** called with the bytes of every DATA frame as it leaves (raw, wire) for progress/statistics */
  onBytes?: (raw: number, wire: number) => void;
  /** never follow a symlink as the file itself (an agent serving a pull: links may point out of its root) */
  noFollow?: boolean;
  /** fan-out: file blocks shared with the other nodes' sessions instead of reads of our own */
  blocks?: BlockSource;
}

/** O_NOFOLLOW where the platform has it (not on Windows, which has no such links to follow here). */
const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

function readFlags(opts: SendOptions): number {
  return fs.constants.O_RDONLY | (opts.noFollow ? O_NOFOLLOW : 0);
}

/** An entry as the encoder takes it (schema Entry; absent bytes fields encode as empty). */
export type WireEntry = Omit<Entry, 'linkTarget' | 'hash'> & { linkTarget?: Uint8Array; hash?: Uint8Array };

/** Buffers in flight per file: one being sent while the next is read. */
const IN_FLIGHT = 4;

async function openSource(src: Buffer, display: string, opts: SendOptions): Promise<fs.promises.FileHandle> {
  try {
    return await fs.promises.open(src, readFlags(opts));
  } catch (e) {
    throw sourceError(e, display);
  }
}

function sourceError(e: unknown, display: string): SmartcopyError {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOENT') return new SmartcopyError('SC_ERR_VANISHED', `${display}: vanished before it could be sent`, { path: display });
  if (err.code === 'ELOOP') return new SmartcopyError('SC_ERR_PATH_ESCAPE', `${display}: is a symbolic link; refusing to follow it`, { path: display });
  return fromSystemError(e, 'read', display);
}

/**
 * Streams [offset, offset+length) of an open file as DATA frames, hashing what it sends.
 * Buffers come from the pool and return to it once the transport has taken the bytes.
 */
async function streamRange(
  ch: Channel,
  src: Buffer,
  fh: fs.promises.FileHandle,
  fileId: number,
  offset: number,
  length: number,
  hashers: Hasher[],
  opts: SendOptions,
  display: string,
): Promise<number> {
  const inflight: Promise<void>[] = [];
  let pos = offset;
  const end = offset + length;
  const blocks = opts.blocks;
  const giveBack = blocks ? (b: Buffer) => blocks.release(b) : (b: Buffer) => opts.pool.release(b);
  while (pos < end) {
    if (inflight.length >= IN_FLIGHT) await inflight.shift();
    let buf: Buffer;
    let n: number;
    if (blocks) {
      // shared with other sessions: exactly what the pool path would read, so the blocks line up
      try {
        buf = await blocks.read(src, fh, pos, Math.min(opts.pool.bufferSize, end - pos));
      } catch (e) {
        throw fromSystemError(e, 'read', display);
      }
      n = buf.length;
    } else {
      buf = opts.pool.acquire();
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, Math.min(buf.length, end - pos), pos));
      } catch (e) {
        opts.pool.release(buf);
        throw fromSystemError(e, 'read', display);
      }
    }
    if (n === 0) {
      giveBack(buf);
      break; // the file shrank; the caller reports it
    }
    const raw = buf.subarray(0, n);
    for (const h of hashers) h.update(raw);
    let payload: Buffer = raw;
    let compression: number = Compression.NONE;
    if (opts.compress) {
      const c = await lz4Compress(raw);
      if (shouldSendCompressed(raw.length, c.length)) {
        payload = c;
        compression = Compression.LZ4;
      }
    }
    if (opts.throttle) await opts.throttle(payload.length);
    const header = { fileId, offset: pos, rawLength: n, compression };
    let ok = true;
    const sent = new Promise<void>((resolve, reject) => {
      ok = ch.send(MsgType.DATA, header, payload, (err) => {
        giveBack(buf);
        if (err) reject(err);
        else resolve();
      });
    });
    // When the stream dies, every in-flight send rejects; the first await reports it and the
    // others must not surface as unhandled rejections (which end the process).
    sent.catch(() => {});
    inflight.push(sent);
    opts.onBytes?.(n, payload.length);
    pos += n;
    // Respect the stream's high-water mark before reading more.
    if (!ok) await ch.drain();
  }
  await Promise.all(inflight);
  return pos - offset;
}

/**
 * Send one whole file on one stream: FILE_BEGIN, DATA*, FILE_END. With `native`, no data moves:
 * the receiver copies from the source path. Does not wait for the receiver's RESULT.
 */
export async function sendWholeFile(ch: Channel, fileId: number, src: Buffer, entry: WireEntry, display: string, opts: SendOptions): Promise<void> {
  if (opts.native) {
    const verifyHash = opts.verifyAlgo ? await hashFile(src, opts.verifyAlgo).catch((e: unknown) => { throw fromSystemError(e, 'read', display); }) : undefined;
    ch.send(MsgType.FILE_BEGIN, { fileId, entry, nativeSource: src, verify: verifyHash !== undefined, verifyAlgo: opts.verifyAlgo ?? '', fsync: opts.fsync });
    if (!ch.send(MsgType.FILE_END, { fileId, verifyHash })) await ch.drain();
    return;
  }
  if (entry.size <= SMALL_READ_MAX) return sendSmallFile(ch, fileId, src, entry, display, opts);
  const fh = await openSource(src, display, opts);
  try {
    const hasher = await createHasher(opts.hashAlgo);
    const strong = opts.verifyAlgo ? await createHasher(opts.verifyAlgo) : undefined;
    ch.send(MsgType.FILE_BEGIN, { fileId, entry, hashAlgo: opts.hashAlgo, verify: strong !== undefined, verifyAlgo: opts.verifyAlgo ?? '', fsync: opts.fsync });
    let sent: number;
    try {
      sent = await streamRange(ch, src, fh, fileId, 0, entry.size, strong ? [hasher, strong] : [hasher], opts, display);
    } catch (e) {
      if (ch.isOpen) ch.send(MsgType.FILE_END, { fileId, aborted: true });
      throw e;
    }
    if (sent !== entry.size) {
      ch.send(MsgType.FILE_END, { fileId, aborted: true });
      throw new SmartcopyError('SC_ERR_VANISHED', `${display}: changed size while being sent (${sent} of ${entry.size} bytes); run again`, { path: display });
    }
    if (!ch.send(MsgType.FILE_END, { fileId, hash: hasher.digest(), verifyHash: strong?.digest() })) await ch.drain();
  } finally {
    await fh.close().catch(() => {});
  }
}

/**
 * Files up to this size are read with one blocking call and sent as three frames in one write.
 * A promise-based open/read/close costs ~100 us of main-thread time per file here, a blocking
 * read of a small file a few; for many small files that is the difference between 4 s and 1 s
 * per 20,000 files.
 */
export const SMALL_READ_MAX = 256 * 1024;

let codecsReady: Promise<void> | undefined;

async function sendSmallFile(ch: Channel, fileId: number, src: Buffer, entry: WireEntry, display: string, opts: SendOptions): Promise<void> {
  const blocks = opts.blocks;
  let data: Buffer;
  try {
    const fd = fs.openSync(src, readFlags(opts));
    try {
      // shared blocks: one byte more than expected, so a file that grew is caught like readFileSync does
      data = blocks ? blocks.readSync(src, fd, 0, entry.size + 1) : fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw sourceError(e, display);
  }
  if (data.length !== entry.size) {
    blocks?.release(data);
    throw new SmartcopyError('SC_ERR_VANISHED', `${display}: changed size while being sent (${data.length} of ${entry.size} bytes); run again`, { path: display });
  }
  let hash: Buffer;
  if (opts.hashAlgo === 'xxhash64') {
    await (codecsReady ??= initCodecs());
    hash = xxh64(data);
  } else hash = await hashBuffer(opts.hashAlgo, data);
  const verifyHash = opts.verifyAlgo ? await hashBuffer(opts.verifyAlgo, data) : undefined;
  let payload: Buffer = data;
  let compression: number = Compression.NONE;
  if (opts.compress && data.length > 0) {
    const c = await lz4Compress(data);
    if (shouldSendCompressed(data.length, c.length)) {
      payload = c;
      compression = Compression.LZ4;
    }
  }
  if (opts.throttle) await opts.throttle(payload.length);
  ch.send(MsgType.FILE_BEGIN, { fileId, entry, hashAlgo: opts.hashAlgo, verify: verifyHash !== undefined, verifyAlgo: opts.verifyAlgo ?? '', fsync: opts.fsync });
  // A shared block goes back once the transport has taken it. (A throw on the way skips that:
  // the cache then leaves the buffer to the GC instead of reusing it, which costs nothing else.)
  if (data.length > 0) ch.send(MsgType.DATA, { fileId, offset: 0, rawLength: data.length, compression }, payload, blocks && (() => blocks.release(data)));
  else blocks?.release(data);
  opts.onBytes?.(data.length, payload.length);
  if (!ch.send(MsgType.FILE_END, { fileId, hash, verifyHash })) await ch.drain();
}

/** Send one chunk of a large file: CHUNK_BEGIN, DATA*, CHUNK_END (or a native range copy). Returns the chunk's hash. */
export async function sendChunk(
  ch: Channel,
  fileId: number,
  src: Buffer,
  entry: WireEntry,
  transferId: string,
  offset: number,
  length: number,
  display: string,
  opts: SendOptions,
): Promise<Buffer> {
  if (opts.native) {
    ch.send(MsgType.CHUNK_BEGIN, { fileId, entry, offset, length, nativeSource: src, transferId });
    if (!ch.send(MsgType.CHUNK_END, { fileId, offset })) await ch.drain();
    return Buffer.alloc(0);
  }
  const fh = await openSource(src, display, opts);
  try {
    const hasher = await createHasher(opts.hashAlgo);
    ch.send(MsgType.CHUNK_BEGIN, { fileId, entry, offset, length, hashAlgo: opts.hashAlgo, transferId });
    const sent = await streamRange(ch, src, fh, fileId, offset, length, [hasher], opts, display);
    if (sent !== length) {
      // The receiver sees the short count and rejects the chunk; the file is reported as changed.
      ch.send(MsgType.CHUNK_END, { fileId, offset, hash: hasher.digest() });
      throw new SmartcopyError('SC_ERR_VANISHED', `${display}: changed size while being sent; run again`, { path: display });
    }
    const hash = hasher.digest();
    if (!ch.send(MsgType.CHUNK_END, { fileId, offset, hash })) await ch.drain();
    return hash;
  } finally {
    await fh.close().catch(() => {});
  }
}

/** --verify for chunked files: the sender hashes the whole source once. */
export async function sourceVerifyHash(src: Buffer, algo: HashAlgo, display: string): Promise<Buffer> {
  try {
    return await hashFile(src, algo);
  } catch (e) {
    throw fromSystemError(e, 'read', display);
  }
}
