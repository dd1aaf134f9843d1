import type { ReadableStreamDefaultReader, WritableStreamDefaultWriter } from 'node:stream/web';
import { ConnectionClosedError, ErrorCodes, SmartcopyError } from '@smartcopy/protocol';
import { AbstractStream } from '../abstract-stream.js';
import type { AbstractStreamInit, WriteCallback } from '../abstract-stream.js';
import type { WtBidiStream, WtReadControl } from './load.js';

/**
 * Outgoing bytes are copied into buffers of at most this size. The package hands a written
 * chunk to HTTP/2 by reference and reports it written at once, long before it reaches the
 * socket, and nothing tells when HTTP/2 lets go of it, so the caller's buffer could not be
 * given back (nor a pooled one reused) safely; a fresh copy is the only safe way, and the one
 * copy on this side. Each copy goes out as one capsule, and the package's work is per capsule:
 * on loopback 256 KiB capsules cost about half the CPU of 64 KiB ones (≈ 4.5 vs 8 CPU-s/GiB
 * for both ends), 1 MiB ones no less than 256 KiB, and buffers ≥ 1 MiB are the ones malloc
 * maps and unmaps each time.
 */
export const WEBTRANSPORT_WRITE_CHUNK = 256 * 1024;

const noop = (): void => undefined;

let nextId = 0;

/** The code sent in RESET_STREAM / STOP_SENDING: the error's wire code (the package clamps codes to 0..255). */
function resetCode(err: Error): { code: number } {
  return { code: Math.min(err instanceof SmartcopyError ? err.wireCode : ErrorCodes.SC_ERR_INTERNAL.wire, 255) };
}

/**
 * One WebTransport bidirectional stream over the WHATWG readable/writable pair.
 *
 * - Writes: copied (see WEBTRANSPORT_WRITE_CHUNK) and written in order; a batch is done when
 *   the package took its last piece, which happens only within the peer's flow-control window,
 *   so a slow reader stops the writer. sendData reports "no more" while the writable's queue is
 *   full (desiredSize ≤ 0) and `writer.ready` brings it back.
 * - Reads: one read() at a time, each chunk a buffer the package allocated for us alone.
 * - pause(): the package keeps draining a stream into its readable's queue whether anyone reads
 *   or not (its backpressure check only runs while a read is pending), and keeps granting the
 *   peer flow-control credit for it, so not reading would buffer without bound. pause() calls
 *   the package's per-stream stopReading() instead: the bytes stay unconsumed, no credit goes
 *   back, and the peer stalls once its window (at most `streamWindow`) is used up.
 * - end(): writer.close(), which sends FIN as a capsule of its own (never inside a data
 *   capsule), so the end is seen even where the package loses a FIN in a data capsule that
 *   arrives split across reads.
 * - abort(): RESET_STREAM (writer.abort) and STOP_SENDING (reader.cancel).
 */
export class WebTransportStream extends AbstractStream {
  readonly remoteAddress: string;
  /** settles once our FIN (or reset) has been handed to the session: a later session close cannot overtake it */
  readonly flushed: Promise<void>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #control: WtReadControl;
  #paused = false;
  #wake: (() => void) | undefined;
  #resolveFlushed!: () => void;
  #waitingReady = false;

  constructor(bidi: WtBidiStream, control: WtReadControl, remoteAddress: string, init: Omit<AbstractStreamInit, 'id'>) {
    super({ ...init, id: `wt:${remoteAddress}/${++nextId}` });
    this.remoteAddress = remoteAddress;
    this.#control = control;
    this.#reader = bidi.readable.getReader();
    this.#writer = bidi.writable.getWriter();
    this.flushed = new Promise<void>((r) => (this.#resolveFlushed = r));
    // the writable errors when the peer sends STOP_SENDING or the session closes, even while
    // we have nothing to write
    this.#writer.closed.then(noop, (err: unknown) => {
      this.#resolveFlushed();
      this.remoteAborted(this.#error(err));
    });
    // a stream aborted by the peer may never get to writer.close()
    void this.closed.then(() => {
      if (this.state === 'aborted') this.#resolveFlushed();
    });
    void this.#readLoop();
  }

  protected override sendData(chunks: readonly Uint8Array[], done: WriteCallback): boolean {
    const w = this.#writer;
    let total = 0;
    for (const c of chunks) total += c.byteLength;
    let last: Promise<void> | undefined;
    let piece: Buffer | undefined;
    let fill = 0;
    for (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) {
        if (piece === undefined) {
          piece = Buffer.allocUnsafeSlow(Math.min(WEBTRANSPORT_WRITE_CHUNK, total));
          fill = 0;
        }
        const n = Math.min(piece.byteLength - fill, c.byteLength - off);
        piece.set(c.subarray(off, off + n), fill);
        fill += n;
        off += n;
        total -= n;
        if (fill === piece.byteLength) {
          // every write promise needs a handler: a failed stream rejects all of them
          last?.catch(noop);
          last = w.write(piece);
          piece = undefined;
        }
      }
    }
    if (last === undefined) {
      queueMicrotask(() => done(null));
      return true;
    }
    last.then(
      () => done(null),
      (err: unknown) => done(this.#error(err)),
    );
    const ok = (w.desiredSize ?? 0) > 0;
    if (!ok && !this.#waitingReady) {
      this.#waitingReady = true;
      w.ready.then(
        () => {
          this.#waitingReady = false;
          this.notifyWritable();
        },
        () => (this.#waitingReady = false),
      );
    }
    return ok;
  }

  protected override sendEnd(): void {
    this.#writer.close().then(
      () => this.#resolveFlushed(),
      (err: unknown) => {
        this.#resolveFlushed();
        this.remoteAborted(this.#error(err));
      },
    );
  }

  protected override sendAbort(err: Error): void {
    const reason = resetCode(err);
    this.#writer.abort(reason).catch(noop);
    this.#reader.cancel(reason).catch(noop);
    this.#wake?.();
    this.#resolveFlushed();
  }

  protected override sendPause(): void {
    this.#paused = true;
    this.#control.stopReading();
  }

  protected override sendResume(): void {
    this.#paused = false;
    this.#control.startReading();
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #readLoop(): Promise<void> {
    const reader = this.#reader;
    try {
      for (;;) {
        while (this.#paused && this.state !== 'aborted') await new Promise<void>((r) => (this.#wake = r));
        const { value, done } = await reader.read();
        if (done) {
          this.remoteEnded();
          return;
        }
        // the read that was pending when pause() came made the package start reading again
        if (this.#paused) this.#control.stopReading();
        this.pushIncoming(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      }
    } catch (err) {
      this.remoteAborted(this.#error(err));
    }
  }

  /** The package's stream errors (a reset, STOP_SENDING, the session closing) as ConnectionClosedError. */
  #error(err: unknown): SmartcopyError {
    if (err instanceof SmartcopyError) return err;
    const detail = err instanceof Error ? err.message : String(err);
    return new ConnectionClosedError(`WebTransport stream ${this.id} broke: ${detail}`, { cause: err });
  }
}
