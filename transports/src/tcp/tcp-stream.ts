import type { Socket } from 'node:net';
import { ConnectionClosedError } from '@smartcopy/protocol';
import { AbstractStream } from '../abstract-stream.js';
import type { AbstractStreamInit, WriteCallback } from '../abstract-stream.js';

/** The errno of a socket error in a one-line, user-facing form. */
function describe(err: NodeJS.ErrnoException): string {
  return err.code ? `${err.code}${err.syscall ? ` (${err.syscall})` : ''}` : err.message;
}

/** One stream = one socket (allowHalfOpen, so end() is a FIN and the peer may still answer). */
export class TcpStream extends AbstractStream {
  readonly remoteAddress: string;
  readonly #socket: Socket;

  constructor(socket: Socket, remoteAddress: string, init: Omit<AbstractStreamInit, 'id'>) {
    super({ ...init, id: `tcp:${remoteAddress}/${socket.localPort ?? 0}` });
    this.remoteAddress = remoteAddress;
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.pushIncoming(chunk));
    socket.on('end', () => this.remoteEnded());
    socket.on('drain', () => this.notifyWritable());
    socket.on('error', (err) => this.remoteAborted(this.#socketError(err)));
    socket.on('close', () => {
      // after 'error' or a clean close this is a no-op; otherwise the socket vanished under us
      this.remoteAborted(new ConnectionClosedError(`connection to ${remoteAddress} closed before the stream ended`));
    });
  }

  protected override sendData(chunks: readonly Uint8Array[], done: WriteCallback): boolean {
    const s = this.#socket;
    const cb = (err?: Error | null): void => done(err ? this.#socketError(err) : null);
    if (chunks.length === 1) return s.write(chunks[0]!, cb);
    // corked writes leave in one writev(): a frame head and its payload share a segment
    s.cork();
    const last = chunks.length - 1;
    for (let i = 0; i < last; i++) s.write(chunks[i]!);
    const ok = s.write(chunks[last]!, cb);
    s.uncork();
    return ok;
  }

  protected override sendEnd(): void {
    this.#socket.end();
  }

  protected override sendAbort(): void {
    // RST, so the peer sees ECONNRESET rather than a clean end
    if (this.#socket.destroyed) return;
    // After our FIN (end() pending), resetAndDestroy() leaves the socket handle open in Node 20,
    // which keeps the process alive (an agent stopping with a client still connected); a plain
    // destroy() closes it.
    if (this.#socket.writableEnded) this.#socket.destroy();
    else this.#socket.resetAndDestroy();
  }

  protected override sendPause(): void {
    this.#socket.pause();
  }

  protected override sendResume(): void {
    this.#socket.resume();
  }

  #socketError(err: Error): ConnectionClosedError {
    if (err instanceof ConnectionClosedError) return err;
    return new ConnectionClosedError(`connection to ${this.remoteAddress} broke: ${describe(err)}`, { cause: err });
  }
}
