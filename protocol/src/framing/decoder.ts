import { ProtocolError, SmartcopyError } from '../errors.js';
import { MESSAGE_NAMES, type MsgTypeValue } from '../schema/messages.js';
import { headerTypes } from '../schema/registry.js';
import { FRAME_LENGTH_OVERHEAD, FRAME_PREFIX_SIZE, MAX_FRAME_SIZE, type Frame } from './frame.js';

export interface FrameDecoderOptions {
  /** largest frame length accepted (bytes after the length field); default MAX_FRAME_SIZE */
  maxFrameSize?: number;
}

/**
 * Sans-IO frame parser: feed it the byte stream in chunks of any size with `push`, get back the
 * frames completed so far. A frame that lies inside one pushed chunk is returned as views of that
 * chunk (no copy); a frame that spans chunks is copied, once, into a buffer of exactly its size
 * as its bytes arrive. Header `bytes` fields are views too, so if the caller recycles the chunks
 * it pushes, it must finish with (or copy) a frame before recycling its chunk.
 *
 * Any violation (oversize, unknown type, bad lengths, undecodable header) throws a ProtocolError
 * and leaves the decoder failed: every later `push`/`end` throws the same error.
 */
export class FrameDecoder {
  readonly maxFrameSize: number;

  /** holds a frame prefix that arrived split across chunks */
  private readonly prefix = Buffer.alloc(FRAME_PREFIX_SIZE);
  private prefixFill = 0;

  // The frame being assembled, once its prefix is known.
  private type: MsgTypeValue = 1;
  private headerLength = 0;
  private bodyLength = 0;
  private body: Buffer | null = null;
  private bodyFill = 0;

  private failure: ProtocolError | null = null;

  constructor(opts: FrameDecoderOptions = {}) {
    const max = opts.maxFrameSize ?? MAX_FRAME_SIZE;
    if (!Number.isInteger(max) || max < FRAME_LENGTH_OVERHEAD || max > 0xffffffff) {
      throw new SmartcopyError('SC_ERR_USAGE', `maxFrameSize must be an integer between ${FRAME_LENGTH_OVERHEAD} and 2^32-1, got ${max}`);
    }
    this.maxFrameSize = max;
  }

  /** Bytes received that do not yet form a complete frame. */
  get buffered(): number {
    return this.body === null ? this.prefixFill : FRAME_PREFIX_SIZE + this.bodyFill;
  }

  /** Feed the next bytes of the stream; returns the frames they complete, in order. */
  push(input: Uint8Array): Frame[] {
    if (this.failure !== null) throw this.failure;
    const chunk = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    const frames: Frame[] = [];
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.body === null) {
        if (this.prefixFill === 0 && end - pos >= FRAME_PREFIX_SIZE) {
          this.readPrefix(chunk, pos);
          pos += FRAME_PREFIX_SIZE;
        } else {
          const take = Math.min(FRAME_PREFIX_SIZE - this.prefixFill, end - pos);
          chunk.copy(this.prefix, this.prefixFill, pos, pos + take);
          this.prefixFill += take;
          pos += take;
          if (this.prefixFill < FRAME_PREFIX_SIZE) {
            // Reject what the partial prefix already shows, so garbage fails at once
            // instead of waiting for bytes that may never come.
            this.checkPartialPrefix();
            break;
          }
          this.prefixFill = 0;
          this.readPrefix(this.prefix, 0);
        }
        if (end - pos >= this.bodyLength) {
          frames.push(this.decode(chunk, pos));
          pos += this.bodyLength;
          continue;
        }
        this.body = Buffer.allocUnsafe(this.bodyLength);
        this.bodyFill = 0;
      }
      const take = Math.min(this.bodyLength - this.bodyFill, end - pos);
      chunk.copy(this.body, this.bodyFill, pos, pos + take);
      this.bodyFill += take;
      pos += take;
      if (this.bodyFill === this.bodyLength) {
        const body = this.body;
        this.body = null;
        this.bodyFill = 0;
        frames.push(this.decode(body, 0));
      }
    }
    return frames;
  }

  /** The stream ended: throws if it ended inside a frame. */
  end(): void {
    if (this.failure !== null) throw this.failure;
    const held = this.buffered;
    if (held > 0) {
      const of = this.body === null ? '' : ` of ${FRAME_PREFIX_SIZE + this.bodyLength}`;
      this.fail('SC_ERR_MALFORMED_FRAME', `connection ended in the middle of a frame (${held}${of} bytes received)`);
    }
  }

  private readPrefix(buf: Buffer, at: number): void {
    const frameLength = buf.readUInt32BE(at);
    this.checkLength(frameLength);
    this.checkType(buf[at + 4]!);
    const headerLength = buf.readUInt32BE(at + 5);
    if (headerLength > frameLength - FRAME_LENGTH_OVERHEAD) {
      this.fail(
        'SC_ERR_MALFORMED_FRAME',
        `malformed frame: header length ${headerLength} exceeds the ${frameLength - FRAME_LENGTH_OVERHEAD} bytes the frame has left`,
      );
    }
    this.type = buf[at + 4] as MsgTypeValue;
    this.headerLength = headerLength;
    this.bodyLength = frameLength - FRAME_LENGTH_OVERHEAD;
  }

  private checkPartialPrefix(): void {
    if (this.prefixFill >= 4) this.checkLength(this.prefix.readUInt32BE(0));
    if (this.prefixFill >= 5) this.checkType(this.prefix[4]!);
  }

  private checkLength(frameLength: number): void {
    if (frameLength > this.maxFrameSize) {
      this.fail('SC_ERR_FRAME_TOO_LARGE', `frame of ${frameLength} bytes exceeds the limit of ${this.maxFrameSize} bytes`);
    }
    if (frameLength < FRAME_LENGTH_OVERHEAD) {
      this.fail('SC_ERR_MALFORMED_FRAME', `malformed frame: length ${frameLength} is shorter than the ${FRAME_LENGTH_OVERHEAD}-byte minimum`);
    }
  }

  private checkType(type: number): void {
    if (headerTypes[type] === undefined) this.fail('SC_ERR_MALFORMED_FRAME', `malformed frame: unknown frame type ${type}`);
  }

  private decode(buf: Buffer, at: number): Frame {
    const headerEnd = at + this.headerLength;
    let header: unknown;
    try {
      header = headerTypes[this.type]!.decode(buf.subarray(at, headerEnd));
    } catch (err) {
      this.fail('SC_ERR_MALFORMED_FRAME', `malformed ${MESSAGE_NAMES[this.type]} frame: header does not decode (${(err as Error).message})`, err);
    }
    return { type: this.type, header, payload: buf.subarray(headerEnd, at + this.bodyLength) };
  }

  private fail(code: 'SC_ERR_MALFORMED_FRAME' | 'SC_ERR_FRAME_TOO_LARGE', message: string, cause?: unknown): never {
    this.failure = new ProtocolError(code, message, cause === undefined ? undefined : { cause });
    throw this.failure;
  }
}
