import type { MessageByType, MsgTypeValue } from '../schema/messages.js';

/** u32be frame length · u8 type · u32be header length */
export const FRAME_PREFIX_SIZE = 9;
/** bytes counted by the frame length that precede the header: type byte + header length */
export const FRAME_LENGTH_OVERHEAD = 5;
/** largest payload a sender puts in one frame */
export const MAX_PAYLOAD_SIZE = 16 * 1024 * 1024;
/**
 * Default limit on a frame's length field (bytes after it): a full payload plus room for its
 * header. Receivers reject larger frames from the length prefix alone.
 */
export const MAX_FRAME_SIZE = MAX_PAYLOAD_SIZE + 64 * 1024;

/**
 * One decoded frame. `header` is the protobuf message named by `type` (see MessageByType);
 * `payload` is the raw bytes after it (empty when there are none).
 */
export interface Frame<H = any> {
  type: MsgTypeValue;
  header: H;
  payload: Buffer;
}

/** A frame of a known type, with its header typed. */
export type FrameOf<T extends MsgTypeValue> = Frame<MessageByType[T]> & { type: T };
