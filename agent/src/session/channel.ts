import {
  ConnectionClosedError,
  FrameDecoder,
  SmartcopyError,
  encodeFrame,
  errorFrame,
  fromSystemError,
  type Frame,
} from '@smartcopy/protocol';
import type { Stream } from '@smartcopy/transports';

export type FrameHandler = (frame: Frame) => void;

/**
 * A framed, flow-controlled view of one transport stream: frames in through a sans-IO decoder,
 * frames out as [head, payload] writes (the payload is never copied here). Bytes are counted for
 * the "bytes on the wire" statistics.
 */
export class Channel {
  private readonly decoder: FrameDecoder;
  private onFrame: FrameHandler = () => {};
  private failed: SmartcopyError | undefined;
  private readonly closeWaiters: Array<(err: SmartcopyError | undefined) => void> = [];
  private ended = false;

  constructor(
    readonly stream: Stream,
    opts: { maxFrameSize?: number } = {},
  ) {
    this.decoder = new FrameDecoder({ maxFrameSize: opts.maxFrameSize });
    stream.setReader({
      data: (chunk) => this.receive(chunk),
      end: () => this.finish(undefined),
      error: (err) =>
        this.finish(err instanceof SmartcopyError ? err : new ConnectionClosedError(`connection lost: ${err.message}`)),
    });
  }

  setHandler(h: FrameHandler): void {
    this.onFrame = h;
  }

  get error(): SmartcopyError | undefined {
    return this.failed;
  }

  get isOpen(): boolean {
    return !this.ended && this.failed === undefined;
  }

  /** Resolves when the peer ends the stream (undefined) or the stream fails (the error). */
  whenClosed(): Promise<SmartcopyError | undefined> {
    if (this.ended || this.failed) return Promise.resolve(this.failed);
    return new Promise((r) => this.closeWaiters.push(r));
  }

  private receive(chunk: Buffer): void {
    if (this.failed) return;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      this.fail(e);
      return;
    }
    for (const f of frames) {
      if (this.failed) return;
      try {
        this.onFrame(f);
      } catch (e) {
        this.fail(e);
        return;
      }
    }
  }

  private finish(err: SmartcopyError | undefined): void {
    if (this.ended && !err) return;
    this.ended = true;
    if (err && !this.failed) this.failed = err;
    const ws = this.closeWaiters.splice(0);
    for (const w of ws) w(this.failed);
  }

  /**
   * A protocol violation or a handler failure: tell the peer with a fatal Error frame, then
   * close this stream. Other streams and sessions are not affected.
   */
  fail(e: unknown): void {
    if (this.failed) return;
    const err = e instanceof SmartcopyError ? e : fromSystemError(e, 'internal error');
    this.failed = err;
    try {
      if (this.stream.state === 'open') {
        this.stream.write(errorFrame(err, true));
        void this.stream.end().catch(() => {}).finally(() => setTimeout(() => this.stream.abort(err), 1000).unref());
      }
    } catch {
      this.stream.abort(err);
    }
    this.finish(err);
  }

  /** Queue a frame. Returns false when the caller should await drain() before sending more. */
  send(type: number, header: object, payload?: Uint8Array, cb?: (err?: Error | null) => void): boolean {
    if (this.failed) throw this.failed;
    return this.stream.write(encodeFrame(type, header, payload), cb);
  }

  /** Send a frame and resolve once its bytes are handed to the transport (payload reusable). */
  sendFlushed(type: number, header: object, payload?: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      try {
        this.send(type, header, payload, (err) => (err ? reject(err) : resolve()));
      } catch (e) {
        reject(e);
      }
    });
  }

  drain(): Promise<void> {
    return this.stream.drain();
  }

  async close(): Promise<void> {
    await this.stream.close().catch(() => {});
  }

  abort(err?: Error): void {
    this.stream.abort(err);
  }
}
