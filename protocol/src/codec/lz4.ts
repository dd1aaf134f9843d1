import { ProtocolError } from '../errors.js';
import { MAX_FRAME_SIZE } from '../framing/frame.js';

/*
 * Wire format of an LZ4 payload (Data, DeltaOps with compression = LZ4): one LZ4 block preceded
 * by its uncompressed length as u32 little-endian — lz4-napi's (lz4_flex's "size prepended")
 * block format. Compression runs on the libuv thread pool, off the event loop.
 */

/** The native addon loads on first use: most runs never compress. */
let lz4Module: Promise<typeof import('lz4-napi')> | undefined;
function lz4Lib(): Promise<typeof import('lz4-napi')> {
  lz4Module ??= import('lz4-napi').then((m) => ((m as { default?: typeof import('lz4-napi') }).default ?? m));
  return lz4Module;
}

/** A compressed payload is sent only when it is at most this fraction of the raw size. */
export const LZ4_MAX_RATIO = 0.9;

/** Largest raw length a compressed payload may claim: nobody sends more than a frame's worth. */
export const LZ4_MAX_RAW_LENGTH = MAX_FRAME_SIZE;

export async function lz4Compress(raw: Uint8Array): Promise<Buffer> {
  return (await lz4Lib()).compress(raw);
}

/**
 * Decompress a payload that must expand to exactly `rawLength` bytes. The claimed size is checked
 * before decompressing, so a hostile payload cannot make us allocate more than `rawLength`.
 */
export async function lz4Decompress(compressed: Uint8Array, rawLength: number): Promise<Buffer> {
  if (!Number.isInteger(rawLength) || rawLength < 0 || rawLength > LZ4_MAX_RAW_LENGTH) {
    throw new ProtocolError('SC_ERR_MALFORMED_FRAME', `LZ4 payload claims an invalid raw length ${rawLength} (limit ${LZ4_MAX_RAW_LENGTH})`);
  }
  if (compressed.length < 4) {
    throw new ProtocolError('SC_ERR_MALFORMED_FRAME', `LZ4 payload of ${compressed.length} bytes is too short to hold its size prefix`);
  }
  const claimed = (compressed[0]! | (compressed[1]! << 8) | (compressed[2]! << 16) | (compressed[3]! << 24)) >>> 0;
  if (claimed !== rawLength) {
    throw new ProtocolError('SC_ERR_MALFORMED_FRAME', `LZ4 payload expands to ${claimed} bytes but its header says ${rawLength}`);
  }
  let raw: Buffer;
  try {
    raw = await (await lz4Lib()).uncompress(compressed);
  } catch (err) {
    throw new ProtocolError('SC_ERR_MALFORMED_FRAME', `LZ4 payload does not decompress: ${(err as Error).message}`, { cause: err });
  }
  if (raw.length !== rawLength) {
    throw new ProtocolError('SC_ERR_MALFORMED_FRAME', `LZ4 payload decompressed to ${raw.length} bytes, expected ${rawLength}`);
  }
  return raw;
}

/** Whether compression paid: true only when compressed ≤ 0.9 × raw. Takes buffers or lengths. */
export function shouldSendCompressed(raw: Uint8Array | number, compressed: Uint8Array | number): boolean {
  const r = typeof raw === 'number' ? raw : raw.length;
  const c = typeof compressed === 'number' ? compressed : compressed.length;
  return r > 0 && c <= r * LZ4_MAX_RATIO;
}
