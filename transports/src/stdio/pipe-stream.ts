import type { Readable, Writable } from 'node:stream';
import { ConnectionClosedError } from '@smartcopy/protocol';
import { AbstractStream } from '../abstract-stream.js';
import type { AbstractStreamInit, WriteCallback } from '../abstract-stream.js';

export interface PipeStreamInit extends Omit<AbstractStreamInit, 'id'> {
  id: string;
  /** how to name the other end in error messages ("agent on stdin/stdout", "root@host: smartcopy agent") */
  describePeer?: string;
}

/** A Node stream error in a one-line, user-facing form (errno code when there is one). */
export function describeStreamError(err: Error): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e.code === 'string' && e.code.startsWith('E') && !e.code.startsWith('ERR_')) {
    return `${e.code}${e.syscall ? ` (${e.syscall})` : ''}`;
  }
  return err.message.split('\n', 1)[0]!;
}

/** Small chunks are joined up to about one SSH packet's worth (OpenSSH: 32 KiB of channel data). */
const JOIN_TARGET = 32 * 1024;

/**
 * Runs of small chunks as single buffers; big chunks pass through as they are. A writable without
 * writev (an SSH channel) makes every write a packet of its own — encrypted, MACed and written
 * to the socket separately — so a frame head, a small file and its end frame would cost three.
 * Joining copies only the small chunks, once.
 */
function joinSmall(chunks: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let run: Uint8Array[] = [];
  let runBytes = 0;
  const flush = (): void => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length > 1) out.push(Buffer.concat(run, runBytes));
    run = [];
    runBytes = 0;
  };
  for (const c of chunks) {
    if (c.length >= JOIN_TARGET) {
      flush();
      out.push(c);
      continue;
    }
    if (runBytes + c.length > JOIN_TARGET) flush();
    run.push(c);
    runBytes += c.length;
  }
  flush();
  return out;
}

/**
 * A Stream over a Node Readable (bytes from the peer) and a Writable (bytes to it): a child
 * process's stdio, our own stdin/stdout, an SSH exec channel (one Duplex passed twice).
 * end() ends the writable, which is the peer's EOF; abort() destroys both. Backpressure runs
 * both ways: write() reports the writable's state and pause() stops reading the readable, so the
 * peer blocks in its own write once the pipe (or the SSH window) is full.
 */
export class PipeStream extends AbstractStream {
  readonly peer: string;
  protected readonly readable: Readable;
  protected readonly writable: Writable;
  #readableEnded = false;
  /** the writable takes several chunks in one call (a socket): no need to join small ones */
  readonly #writev: boolean;

  constructor(readable: Readable, writable: Writable, init: PipeStreamInit) {
    super(init);
    this.readable = readable;
    this.writable = writable;
    this.peer = init.describePeer ?? init.id;
    this.#writev = typeof (writable as Writable & { _writev?: unknown })._writev === 'function';
    readable.on('data', (chunk: Buffer | string) => this.pushIncoming(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    readable.on('end', () => {
      this.#readableEnded = true;
      this.onReadableEnd();
    });
    readable.on('error', (err) => this.remoteAborted(this.streamError(err)));
    readable.on('close', () => {
      // after 'end' or 'error' this is a no-op; otherwise the pipe vanished under us
      if (!this.#readableEnded) this.remoteAborted(new ConnectionClosedError(`${this.peer}: closed before the stream ended`));
    });
    if (writable !== (readable as unknown)) writable.on('error', (err) => this.remoteAborted(this.streamError(err)));
    writable.on('drain', () => this.notifyWritable());
  }

  /** the readable reached its end (the peer's EOF); a subclass may hold it back (exit status) */
  protected onReadableEnd(): void {
    this.remoteEnded();
  }

  /** a failure of either side as the one-line ConnectionClosedError the stream aborts with */
  protected streamError(err: Error): ConnectionClosedError {
    if (err instanceof ConnectionClosedError) return err;
    return new ConnectionClosedError(`${this.peer}: ${describeStreamError(err)}`, { cause: err });
  }

  protected override sendData(chunks: readonly Uint8Array[], done: WriteCallback): boolean {
    const w = this.writable;
    const cb = (err?: Error | null): void => done(err ? this.streamError(err) : null);
    if (chunks.length > 1 && !this.#writev) chunks = joinSmall(chunks);
    if (chunks.length === 1) return w.write(chunks[0]!, cb);
    // corked writes reach a _writev-capable writable (a socket) in one call
    w.cork();
    const last = chunks.length - 1;
    for (let i = 0; i < last; i++) w.write(chunks[i]!);
    const ok = w.write(chunks[last]!, cb);
    w.uncork();
    return ok;
  }

  protected override sendEnd(): void {
    this.writable.end();
  }

  protected override sendAbort(_err: Error): void {
    this.readable.destroy();
    if (this.writable !== (this.readable as unknown)) this.writable.destroy();
  }

  protected override sendPause(): void {
    this.readable.pause();
  }

  protected override sendResume(): void {
    this.readable.resume();
  }
}
