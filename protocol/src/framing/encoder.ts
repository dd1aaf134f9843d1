import protobuf from 'protobufjs';
import { ProtocolError, SmartcopyError } from '../errors.js';
import { MESSAGE_NAMES, type HeaderInit, type MsgTypeValue } from '../schema/messages.js';
import { headerTypes } from '../schema/registry.js';
import { FRAME_LENGTH_OVERHEAD, FRAME_PREFIX_SIZE, MAX_FRAME_SIZE } from './frame.js';

/**
 * Encode one frame as `[head]` or `[head, payload]`, where `head` is the 9-byte prefix and the
 * protobuf header in one buffer and `payload` is the caller's buffer itself, never copied.
 * Write the array with one `writev` (or cork/uncork) so the frame leaves in one syscall.
 * The caller must not modify `payload` until the transport has written it.
 */
export function encodeFrame<T extends MsgTypeValue>(type: T, header: HeaderInit<T>, payload?: Uint8Array): Buffer[];
/** Untyped form for code that forwards frames of any type; the type is checked at run time. */
export function encodeFrame(type: number, header: object, payload?: Uint8Array): Buffer[];
export function encodeFrame(type: number, header: object, payload?: Uint8Array): Buffer[] {
  const msgType = headerTypes[type];
  if (msgType === undefined) {
    throw new SmartcopyError('SC_ERR_INTERNAL', `cannot encode a frame of unknown type ${type}`);
  }
  // Reserve the 9 prefix bytes (two fixed32 and a one-byte varint 0) in front of the header so
  // that protobufjs allocates head and header as one buffer; the prefix is patched in below.
  const writer = protobuf.Writer.create().fixed32(0).fixed32(0).uint32(0);
  let head: Buffer;
  try {
    head = msgType.encode(header, writer).finish() as Buffer;
  } catch (err) {
    throw new SmartcopyError('SC_ERR_INTERNAL', `cannot encode ${MESSAGE_NAMES[type as MsgTypeValue]} header: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const headerLength = head.length - FRAME_PREFIX_SIZE;
  const payloadLength = payload === undefined ? 0 : payload.length;
  const frameLength = FRAME_LENGTH_OVERHEAD + headerLength + payloadLength;
  if (frameLength > MAX_FRAME_SIZE) {
    throw new ProtocolError(
      'SC_ERR_FRAME_TOO_LARGE',
      `${MESSAGE_NAMES[type as MsgTypeValue]} frame of ${frameLength} bytes exceeds the limit of ${MAX_FRAME_SIZE} bytes`,
    );
  }
  head.writeUInt32BE(frameLength, 0);
  head[4] = type;
  head.writeUInt32BE(headerLength, 5);
  if (payloadLength === 0) return [head];
  return [head, Buffer.isBuffer(payload) ? payload : Buffer.from(payload!.buffer, payload!.byteOffset, payloadLength)];
}

/** Total bytes of an encoded frame (what it costs on the wire). */
export function encodedLength(parts: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}
