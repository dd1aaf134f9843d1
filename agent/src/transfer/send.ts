import fs from 'node:fs/promises';
import {
  Compression,
  MsgType,
  SmartcopyError,
  createHasher,
  fromSystemError,
  lz4Compress,
  shouldSendCompressed,
  type HashAlgo,
  type Hasher,
} from '@smartcopy/protocol';
import type { BufferPool } from '../util/index.js';
import type { Channel } from '../session/channel.js';
import { hashFile } from '../verify/index.js';

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
}

/** Wire form of an entry (schema Entry). */
export interface WireEntry {
  path: Uint8Array;
  type: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  mode: number;
  uid: number;
  gid: number;
  linkTarget?: Uint8Array;
}

/** Buffers in flight per file: one being sent while the next is read. */
const IN_FLIGHT = 2;

async function openSource(src: Buffer, display: string): Promise<fs.FileHandle> {
  try {
    return await fs.open(src, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new SmartcopyError('SC_ERR_VANISHED', `${display}: vanished before it could be sent`, { path: display });
    throw fromSystemError(e, 'open', display);
  }
}

/**
 * Streams [offset, offset+length) of an open file as DATA frames, hashing what it sends.
 * Buffers come from the pool and return to it once the transport has taken the bytes.
 */
async function streamRange(
  ch: Channel,
  fh: fs.FileHandle,
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
  while (pos < end) {
    if (inflight.length >= IN_FLIGHT) await inflight.shift();
    const buf = opts.pool.acquire();
    let n: number;
    try {
      ({ bytesRead: n } = await fh.read(buf, 0, Math.min(buf.length, end - pos), pos));
    } catch (e) {
      opts.pool.release(buf);
      throw fromSystemError(e, 'read', display);
    }
    if (n === 0) {
      opts.pool.release(buf);
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
    inflight.push(
      new Promise<void>((resolve, reject) => {
        ok = ch.send(MsgType.DATA, header, payload, (err) => {
          opts.pool.release(buf);
          if (err) reject(err);
          else resolve();
        });
      }),
    );
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
  const fh = await openSource(src, display);
  try {
    const hasher = await createHasher(opts.hashAlgo);
    const strong = opts.verifyAlgo ? await createHasher(opts.verifyAlgo) : undefined;
    ch.send(MsgType.FILE_BEGIN, { fileId, entry, hashAlgo: opts.hashAlgo, verify: strong !== undefined, verifyAlgo: opts.verifyAlgo ?? '', fsync: opts.fsync });
    let sent: number;
    try {
      sent = await streamRange(ch, fh, fileId, 0, entry.size, strong ? [hasher, strong] : [hasher], opts, display);
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
  const fh = await openSource(src, display);
  try {
    const hasher = await createHasher(opts.hashAlgo);
    ch.send(MsgType.CHUNK_BEGIN, { fileId, entry, offset, length, hashAlgo: opts.hashAlgo, transferId });
    const sent = await streamRange(ch, fh, fileId, offset, length, [hasher], opts, display);
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
