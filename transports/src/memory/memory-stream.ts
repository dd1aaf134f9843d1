import { ConnectionClosedError } from '@smartcopy/protocol';
import { AbstractStream } from '../abstract-stream.js';
import type { AbstractStreamInit, WriteCallback } from '../abstract-stream.js';
import type { Stream } from '../types.js';

/** Runs of chunks smaller than this are copied into one buffer (one allocation, like a kernel skb). */
const COALESCE_BELOW = 64 * 1024;

/**
 * One end of an in-process stream. Behaves like a socket: written bytes are copied once into
 * a "kernel" buffer, so the writer may reuse its buffers when the write callback fires, and
 * they reach the peer asynchronously. Flow control is end to end: the bytes the peer has not
 * yet handed to its reader count against our high-water mark, so a paused peer stops us.
 */
export class MemoryStream extends AbstractStream {
  #peer!: MemoryStream;
  #transit: Buffer[] = [];
  #endQueued = false;
  #deliveryScheduled = false;
  /** bytes we sent that the peer's reader has not consumed yet */
  #unread = 0;

  static pair(init: Omit<AbstractStreamInit, 'id'> & { id: string }): [MemoryStream, MemoryStream] {
    const a = new MemoryStream({ ...init, id: `${init.id}/a` });
    const b = new MemoryStream({ ...init, id: `${init.id}/b` });
    a.#peer = b;
    b.#peer = a;
    return [a, b];
  }

  protected override sendData(chunks: readonly Uint8Array[], done: WriteCallback): boolean {
    let run: Uint8Array[] = [];
    let runBytes = 0;
    const flushRun = (): void => {
      if (runBytes > 0) this.#transit.push(run.length === 1 ? Buffer.from(run[0]!) : Buffer.concat(run, runBytes));
      run = [];
      runBytes = 0;
    };
    for (const c of chunks) {
      if (c.byteLength === 0) continue;
      this.#unread += c.byteLength;
      if (c.byteLength >= COALESCE_BELOW) {
        flushRun();
        this.#transit.push(Buffer.from(c));
      } else {
        run.push(c);
        runBytes += c.byteLength;
        if (runBytes >= COALESCE_BELOW) flushRun();
      }
    }
    flushRun();
    this.#scheduleDelivery();
    done();
    return this.#unread < this.highWaterMark;
  }

  protected override sendEnd(): void {
    this.#endQueued = true;
    this.#scheduleDelivery();
  }

  protected override sendAbort(err: Error): void {
    this.#transit = [];
    const peer = this.#peer;
    // a reset overtakes data in flight, as a TCP RST does
    queueMicrotask(() => peer.remoteAborted(new ConnectionClosedError(`stream ${peer.id} aborted by peer: ${err.message}`)));
  }

  protected override transportBufferedBytes(): number {
    return this.#unread;
  }

  protected override onConsumed(bytes: number): void {
    const peer = this.#peer;
    peer.#unread -= bytes;
    if (peer.#unread < peer.highWaterMark) peer.notifyWritable();
  }

  #scheduleDelivery(): void {
    if (this.#deliveryScheduled) return;
    this.#deliveryScheduled = true;
    setImmediate(this.#deliverToPeer);
  }

  readonly #deliverToPeer = (): void => {
    this.#deliveryScheduled = false;
    const chunks = this.#transit;
    this.#transit = [];
    const peer = this.#peer;
    for (const c of chunks) peer.pushIncoming(c);
    if (this.#endQueued && this.#transit.length === 0) peer.remoteEnded();
  };
}

let pairSeq = 0;

/** Two connected in-process streams: what one writes, the other reads. */
export function createMemoryPair(opts: { id?: string; highWaterMark?: number; maxBuffered?: number } = {}): [Stream, Stream] {
  return MemoryStream.pair({ ...opts, id: opts.id ?? `mem-${++pairSeq}` });
}
