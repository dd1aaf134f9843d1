import fs from 'node:fs';
import {
  BasisSignature,
  Compression,
  MsgType,
  SignatureBuilder,
  SmartcopyError,
  deltaOpsFrame,
  fromSystemError,
  initCodecs,
  lz4Compress,
  shouldSendCompressed,
  signatureFrames,
  type DeltaBatch,
  type MatchStats,
  type SignatureParams,
} from '@smartcopy/protocol';
import type { Channel } from '../session/channel.js';
import type { SendOptions, WireEntry } from './send.js';
import { sharedMatchPool, type MatchEnd } from './match-pool.js';

/** Files smaller than this go whole: a signature round trip costs more than sending them. */
export const DELTA_MIN_SIZE = 64 * 1024;
const PIECE = 1 << 20;

const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

/** Open a basis or source for reading; never through a final symlink when `noFollow`. */
async function openRead(path: Buffer, display: string, noFollow: boolean): Promise<fs.promises.FileHandle> {
  try {
    return await fs.promises.open(path, fs.constants.O_RDONLY | (noFollow ? O_NOFOLLOW : 0));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ELOOP') throw new SmartcopyError('SC_ERR_PATH_ESCAPE', `${display}: is a symbolic link; refusing to follow it`, { path: display });
    if (err.code === 'ENOENT') throw new SmartcopyError('SC_ERR_VANISHED', `${display}: vanished`, { path: display });
    throw fromSystemError(e, 'read', display);
  }
}

/**
 * Read a basis file and produce its signature, handing each batch of packed block sums to `emit`
 * as it is ready (no whole-file buffering).
 */
export async function buildSignature(
  path: Buffer,
  display: string,
  seed: number,
  blockSize: number | undefined,
  emit: (params: SignatureParams, sums: Buffer) => void | Promise<void>,
): Promise<SignatureParams> {
  await initCodecs();
  const fh = await openRead(path, display, true);
  try {
    const size = (await fh.stat()).size;
    const builder = new SignatureBuilder(size, seed, blockSize ? { blockSize } : {});
    const buf = Buffer.allocUnsafe(Math.min(PIECE, Math.max(1, size)));
    let pos = 0;
    while (pos < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (bytesRead === 0) break;
      builder.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
      const sums = builder.takeSums();
      if (sums.length > 0) await emit(builder.params, sums);
    }
    const rest = builder.finish();
    if (rest.length > 0 || size === 0) await emit(builder.params, rest);
    return builder.params;
  } catch (e) {
    throw e instanceof SmartcopyError ? e : fromSystemError(e, 'read', display);
  } finally {
    await fh.close().catch(() => {});
  }
}

/** Stream a basis signature as SIGNATURE frames (the push receiver's answer to SIGNATURE_REQUEST). */
export async function sendSignature(ch: Channel, fileId: number, path: Buffer, display: string, seed: number, blockSize: number | undefined): Promise<void> {
  await buildSignature(path, display, seed, blockSize, async (params, sums) => {
    for (const f of signatureFrames(fileId, params, sums)) {
      if (!ch.send(MsgType.SIGNATURE, f.header, f.payload)) await ch.drain();
    }
  });
}

/** The whole signature in memory (a pulling client packs it into its READ_REQUEST). */
export async function packedSignature(path: Buffer, display: string, seed: number, blockSize: number | undefined): Promise<{ params: SignatureParams; sums: Buffer }> {
  const parts: Buffer[] = [];
  const params = await buildSignature(path, display, seed, blockSize, (_p, sums) => void parts.push(sums));
  return { params, sums: Buffer.concat(parts) };
}

/**
 * Send a file as delta ops against the receiver's basis signature: FILE_BEGIN (delta), DELTA_OPS*,
 * FILE_END with the whole-file hash. Literals are LZ4-compressed when that pays and `compress`.
 */
export async function sendDeltaFile(
  ch: Channel,
  fileId: number,
  src: Buffer,
  entry: WireEntry,
  display: string,
  sig: BasisSignature,
  seed: number,
  opts: SendOptions,
): Promise<MatchStats> {
  ch.send(MsgType.FILE_BEGIN, {
    fileId,
    entry,
    hashAlgo: 'xxhash64',
    fsync: opts.fsync,
    delta: true,
    deltaBlockSize: sig.blockSize,
    deltaBasisSize: sig.basisSize,
  });
  const sendBatches = async (batches: readonly DeltaBatch[]): Promise<void> => {
    for (const b of batches) {
      let compressed: { compression: number; payload: Buffer } | undefined;
      if (opts.compress && b.literals.length > 0) {
        const c = await lz4Compress(b.literals);
        if (shouldSendCompressed(b.literals.length, c.length)) compressed = { compression: Compression.LZ4, payload: c };
      }
      const f = deltaOpsFrame(fileId, b, compressed);
      if (opts.throttle) await opts.throttle(f.payload.length);
      opts.onBytes?.(b.literals.length, f.payload.length);
      if (!ch.send(MsgType.DELTA_OPS, f.header, f.payload)) await ch.drain();
    }
  };
  // Matching runs on a worker thread; this thread only moves its results to the wire.
  const it = sharedMatchPool().match(src, sig, seed, opts.noFollow ?? false);
  let end: MatchEnd;
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) {
        end = r.value;
        break;
      }
      await sendBatches(r.value);
    }
  } catch (e) {
    if (ch.isOpen) ch.send(MsgType.FILE_END, { fileId, aborted: true });
    throw e instanceof SmartcopyError ? new SmartcopyError(e.code, `${display}: ${e.message}`, { path: display }) : e;
  }
  if (end.size !== entry.size) {
    ch.send(MsgType.FILE_END, { fileId, aborted: true });
    throw new SmartcopyError('SC_ERR_VANISHED', `${display}: changed size while being sent (${end.size} of ${entry.size} bytes); run again`, { path: display });
  }
  if (!ch.send(MsgType.FILE_END, { fileId, hash: end.hash ?? Buffer.alloc(0) })) await ch.drain();
  return end.stats;
}
