import { ProtocolError, SmartcopyError } from '../errors.js';
import { encodeFrame } from '../framing/encoder.js';
import type { Frame, FrameOf } from '../framing/frame.js';
import { MsgType, type ErrorInfo, type ErrorMsg, type MessageInit, type MsgTypeValue } from '../schema/messages.js';

const NAMES: string[] = [];
for (const [name, value] of Object.entries(MsgType)) NAMES[value] = name;

/** Name of a frame type as in the proto enum (e.g. 'FILE_BEGIN'); unknown numbers read 'TYPE_<n>'. */
export function msgTypeName(type: number): string {
  return NAMES[type] ?? `TYPE_${type}`;
}

export type FrameHandler<Ctx, T extends MsgTypeValue = MsgTypeValue> = (frame: FrameOf<T>, ctx: Ctx) => void | Promise<void>;

/**
 * Routes frames to handlers by type. A session keeps one table per phase (handshake, transfer)
 * so a frame that makes no sense in the current phase is rejected by the lookup itself.
 */
export class HandlerTable<Ctx> {
  private readonly handlers: (FrameHandler<Ctx, any> | undefined)[] = [];

  /** @param phase names the phase in "unexpected X frame while <phase>" errors */
  constructor(readonly phase?: string) {}

  /** Register the handler for `type`, replacing any previous one. */
  on<T extends MsgTypeValue>(type: T, handler: FrameHandler<Ctx, T>): this {
    this.handlers[type] = handler;
    return this;
  }

  off(type: MsgTypeValue): this {
    this.handlers[type] = undefined;
    return this;
  }

  has(type: number): boolean {
    return this.handlers[type] !== undefined;
  }

  /**
   * Run the handler registered for `frame.type` and return what it returns.
   * Throws SC_ERR_PROTOCOL when no handler is registered for that type.
   */
  dispatch(frame: Frame, ctx: Ctx): void | Promise<void> {
    const handler = this.handlers[frame.type];
    if (handler === undefined) {
      throw new ProtocolError(
        'SC_ERR_PROTOCOL',
        `unexpected ${msgTypeName(frame.type)} frame (type ${frame.type})${this.phase ? ` while ${this.phase}` : ''}`,
      );
    }
    return handler(frame as FrameOf<MsgTypeValue>, ctx);
  }
}

/** Longest error message sent on the wire; longer ones are cut so an ERROR frame stays small. */
const MAX_ERROR_MESSAGE = 4096;

/** The wire form of an error, for ERROR frames and failed RESULTs. */
export function toErrorInfo(err: SmartcopyError | unknown): MessageInit<ErrorInfo> {
  const e =
    err instanceof SmartcopyError
      ? err
      : new SmartcopyError('SC_ERR_INTERNAL', err instanceof Error ? err.message : String(err));
  const message = e.message.length > MAX_ERROR_MESSAGE ? `${e.message.slice(0, MAX_ERROR_MESSAGE)}…` : e.message;
  return {
    code: e.wireCode,
    codeName: e.code,
    message,
    path: e.path === undefined ? undefined : Buffer.from(e.path, 'utf8'),
  };
}

/** Rebuild the SmartcopyError an ErrorInfo describes (unknown codes become SC_ERR_PROTOCOL). */
export function fromErrorInfo(info: ErrorInfo | null | undefined): SmartcopyError {
  if (!info) return new ProtocolError('SC_ERR_PROTOCOL', 'the peer reported an error without details');
  const path = info.path.length > 0 ? Buffer.from(info.path).toString('utf8') : undefined;
  return SmartcopyError.fromWire(info.code, info.message, path);
}

/** Encode an ERROR frame; after a fatal one the sender closes the stream. */
export function errorFrame(err: SmartcopyError | unknown, fatal: boolean): Buffer[] {
  return encodeFrame(MsgType.ERROR, { error: toErrorInfo(err), fatal });
}

/** The SmartcopyError carried by a received ERROR frame's header. */
export function errorFromFrame(header: ErrorMsg): SmartcopyError {
  return fromErrorInfo(header.error);
}
