import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { STREAM_HIGH_WATER_MARK, STREAM_MAX_BUFFERED } from './types.js';
import type { Stream, StreamReader, StreamState } from './types.js';

export interface AbstractStreamInit {
  id: string;
  /** write() returns false once this many bytes are queued, in flight or unread by the peer */
  highWaterMark?: number;
  /** unread incoming bytes allowed while paused (or before a reader is set) before aborting */
  maxBuffered?: number;
}

export type WriteCallback = (err?: Error | null) => void;

interface PendingWrite {
  readonly chunks: readonly Uint8Array[];
  readonly bytes: number;
  readonly cb: WriteCallback | undefined;
}

/** Writes handed to the transport in one sendData() call. */
interface Batch {
  readonly entries: readonly PendingWrite[];
  readonly bytes: number;
  settled: boolean;
}

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Fire-and-forget `stream.end()` must not crash the process when the stream is aborted later;
  // callers that await the promise still see the rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new SmartcopyError('SC_ERR_INTERNAL', String(err));
}

/** User callbacks must not corrupt stream state; a throwing callback surfaces as an uncaught error. */
function callSafely(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}

/**
 * The single implementation of stream buffering, backpressure and lifecycle. A transport
 * subclass only moves bytes: it implements `sendData`/`sendEnd`/`sendAbort` (and optionally the
 * pause/resume/close hooks) and reports what arrives through `pushIncoming`, `remoteEnded` and
 * `remoteAborted`. When a transport that refused more data (sendData returned false) can take
 * more again, or its own unread-byte count drops, it calls `notifyWritable()`.
 *
 * States: open → closing (one direction finished) → closed (both finished), or aborted.
 * Errors: operations pending when the stream aborts (write callbacks, end(), close(), drain())
 * fail with the abort error itself; write() and drain() called after the stream ended, closed
 * or aborted fail with ConnectionClosedError (its cause is the abort error, if any).
 */
export abstract class AbstractStream implements Stream {
  readonly id: string;
  readonly closed: Promise<void>;
  protected readonly highWaterMark: number;
  protected readonly maxBuffered: number;

  #state: StreamState = 'open';
  #abortError: Error | undefined;
  #resolveClosed!: () => void;
  #bytesWritten = 0;
  #bytesRead = 0;

  // outbound: queue → (sendData) → in flight → (done callback)
  #queue: PendingWrite[] = [];
  #queuedBytes = 0;
  readonly #inFlight = new Set<Batch>();
  #inFlightBytes = 0;
  #transportReady = true;
  #flushScheduled = false;
  #flushing = false;
  #writeEnded = false;
  #endSent = false;
  #writeFinished = false;
  #endDeferred: Deferred | undefined;
  #closeDeferred: Deferred | undefined;
  #drainDeferred: Deferred | undefined;

  // inbound: pushIncoming → buffer (while paused / no reader) → reader.data
  #reader: StreamReader | undefined;
  #inbound: Buffer[] = [];
  #inboundHead = 0;
  #inboundBytes = 0;
  #paused = false;
  #delivering = false;
  #deliverScheduled = false;
  #remoteEnded = false;
  #endDelivered = false;
  #errorDelivered = false;

  constructor(init: AbstractStreamInit) {
    this.id = init.id;
    this.highWaterMark = init.highWaterMark ?? STREAM_HIGH_WATER_MARK;
    this.maxBuffered = init.maxBuffered ?? STREAM_MAX_BUFFERED;
    this.closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  // ---- hooks for transports -------------------------------------------------------------

  /**
   * Hand `chunks` to the underlying transport, in order. Call `done` once the transport no
   * longer references them (or with an error if they could not be sent). Return false when the
   * transport wants no more data until it calls `notifyWritable()`.
   */
  protected abstract sendData(chunks: readonly Uint8Array[], done: WriteCallback): boolean;
  /** all data has been handed over: signal end-of-stream to the peer */
  protected abstract sendEnd(): void;
  /** tear the stream down immediately and tell the peer (reset), if possible */
  protected abstract sendAbort(err: Error): void;
  /** ask the peer to stop sending (e.g. stop reading the socket) */
  protected sendPause(): void {}
  protected sendResume(): void {}
  /** both directions finished cleanly: release transport resources */
  protected sendClose(): void {}
  /** the reader consumed `bytes` (used by transports with credit-based flow control) */
  protected onConsumed(_bytes: number): void {}
  /** bytes the transport still holds for this stream beyond the in-flight writes (peer unread) */
  protected transportBufferedBytes(): number {
    return 0;
  }

  /** A chunk arrived from the peer. The stream takes ownership of it. */
  protected pushIncoming(chunk: Buffer): void {
    if (this.#state === 'aborted' || this.#remoteEnded || chunk.byteLength === 0) return;
    this.#bytesRead += chunk.byteLength;
    const reader = this.#reader;
    if (reader !== undefined && !this.#paused && !this.#delivering && this.#inboundBytes === 0) {
      this.#delivering = true;
      try {
        reader.data(chunk);
      } catch (err) {
        this.#fail(toError(err), true);
        return;
      } finally {
        this.#delivering = false;
      }
      if (!this.#aborted()) this.onConsumed(chunk.byteLength);
      return;
    }
    this.#inbound.push(chunk);
    this.#inboundBytes += chunk.byteLength;
    if (this.#inboundBytes > this.maxBuffered) {
      this.#fail(
        new SmartcopyError(
          'SC_ERR_STREAM_BUFFER',
          `stream ${this.id}: more than ${this.maxBuffered} bytes of incoming data buffered while the reader was paused`,
        ),
        true,
      );
      return;
    }
    if (reader !== undefined && !this.#paused) this.#scheduleDeliver();
  }

  /** The peer ended its side cleanly. */
  protected remoteEnded(): void {
    if (this.#state === 'aborted' || this.#state === 'closed' || this.#remoteEnded) return;
    this.#remoteEnded = true;
    if (this.#state === 'open') this.#state = 'closing';
    this.#deliver();
    this.#maybeClosed();
  }

  /** The peer reset the stream or the transport failed. */
  protected remoteAborted(err: Error): void {
    this.#fail(err, false);
  }

  /** The transport can take data again (after sendData returned false) or its unread count dropped. */
  protected notifyWritable(): void {
    this.#transportReady = true;
    if (this.#state === 'aborted' || this.#state === 'closed') return;
    this.#flush();
    this.#checkDrain();
  }

  // ---- Stream ---------------------------------------------------------------------------

  get state(): StreamState {
    return this.#state;
  }

  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** outgoing bytes not yet acknowledged by the transport (queued + in flight + peer unread) */
  get writeBufferedBytes(): number {
    return this.#queuedBytes + this.#inFlightBytes + this.transportBufferedBytes();
  }

  /** incoming bytes waiting for the reader */
  get readBufferedBytes(): number {
    return this.#inboundBytes;
  }

  write(chunks: Uint8Array | readonly Uint8Array[], cb?: WriteCallback): boolean {
    if (this.#writeEnded || this.#state === 'closed' || this.#state === 'aborted') {
      throw this.#closedError('write to');
    }
    // copy the array (not the bytes): the caller may reuse its array right away
    const list = chunks instanceof Uint8Array ? [chunks] : chunks.slice();
    let bytes = 0;
    for (const c of list) bytes += c.byteLength;
    this.#queue.push({ chunks: list, bytes, cb });
    this.#queuedBytes += bytes;
    this.#scheduleFlush();
    return !this.#needsDrain();
  }

  drain(): Promise<void> {
    if (this.#state === 'aborted') return Promise.reject(this.#closedError('drain'));
    if (!this.#needsDrain()) return Promise.resolve();
    this.#drainDeferred ??= deferred();
    return this.#drainDeferred.promise;
  }

  setReader(reader: StreamReader): void {
    this.#reader = reader;
    this.#endDelivered = false;
    if (this.#state === 'aborted') {
      this.#errorDelivered = false;
      queueMicrotask(() => this.#deliverError());
      return;
    }
    this.#scheduleDeliver();
  }

  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    if (this.#readable()) this.#hook(() => this.sendPause());
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.#readable()) this.#hook(() => this.sendResume());
    this.#scheduleDeliver();
  }

  end(): Promise<void> {
    if (this.#endDeferred !== undefined) return this.#endDeferred.promise;
    const d = (this.#endDeferred = deferred());
    if (this.#state === 'aborted') d.reject(this.#abortError!);
    else {
      this.#startEnd();
      if (this.#writeFinished) d.resolve();
    }
    return d.promise;
  }

  close(): Promise<void> {
    if (this.#closeDeferred !== undefined) return this.#closeDeferred.promise;
    const d = (this.#closeDeferred = deferred());
    if (this.#state === 'aborted') d.reject(this.#abortError!);
    else if (this.#state === 'closed') d.resolve();
    else this.#startEnd();
    return d.promise;
  }

  abort(err?: Error): void {
    this.#fail(err ?? new SmartcopyError('SC_ERR_ABORTED', `stream ${this.id} aborted`), true);
  }

  // ---- internals ------------------------------------------------------------------------

  /** a method, not a field read, so TypeScript does not narrow it across reader callbacks */
  #aborted(): boolean {
    return this.#state === 'aborted';
  }

  #needsDrain(): boolean {
    return this.#queuedBytes + this.#inFlightBytes + this.transportBufferedBytes() >= this.highWaterMark;
  }

  #readable(): boolean {
    return (this.#state === 'open' || this.#state === 'closing') && !this.#remoteEnded;
  }

  #closedError(op: string): ConnectionClosedError {
    if (this.#state === 'aborted') {
      return new ConnectionClosedError(`cannot ${op} stream ${this.id}: it was aborted (${this.#abortError?.message})`, {
        cause: this.#abortError,
      });
    }
    return new ConnectionClosedError(`cannot ${op} stream ${this.id}: it is ${this.#writeEnded ? 'ended' : this.#state}`);
  }

  #hook(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#fail(toError(err), true);
    }
  }

  #startEnd(): void {
    if (this.#writeEnded) return;
    this.#writeEnded = true;
    if (this.#state === 'open') this.#state = 'closing';
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // Deferring to a microtask coalesces the writes of one tick into one sendData call (one
    // writev for a frame head + payload written separately).
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      while (this.#transportReady && this.#queue.length > 0 && this.#sendable()) {
        const entries = this.#takeBatch();
        let bytes = 0;
        for (const e of entries) bytes += e.bytes;
        const batch: Batch = { entries, bytes, settled: false };
        this.#queuedBytes -= bytes;
        this.#inFlight.add(batch);
        this.#inFlightBytes += batch.bytes;
        this.#bytesWritten += batch.bytes;
        if (batch.bytes === 0) {
          queueMicrotask(() => this.#batchDone(batch));
          continue;
        }
        const chunks = entries.length === 1 ? entries[0]!.chunks : entries.flatMap((e) => e.chunks);
        if (!this.sendData(chunks, (err) => this.#batchDone(batch, err))) this.#transportReady = false;
      }
      if (this.#writeEnded && !this.#endSent && this.#queue.length === 0 && this.#sendable()) {
        this.#endSent = true;
        this.sendEnd();
      }
    } catch (err) {
      this.#fail(toError(err), true);
    } finally {
      this.#flushing = false;
    }
    this.#maybeWriteFinished();
  }

  /**
   * Up to a high-water mark's worth of queued writes (at least one): a writer that ignores
   * backpressure must not push everything it queued into the transport's buffers at once.
   */
  #takeBatch(): PendingWrite[] {
    const q = this.#queue;
    if (this.#queuedBytes <= this.highWaterMark) {
      this.#queue = [];
      return q;
    }
    let n = 0;
    let bytes = 0;
    while (n < q.length && bytes < this.highWaterMark) bytes += q[n++]!.bytes;
    return q.splice(0, n);
  }

  #sendable(): boolean {
    return this.#state === 'open' || this.#state === 'closing';
  }

  #batchDone(batch: Batch, err?: Error | null): void {
    if (batch.settled) return;
    batch.settled = true;
    this.#inFlight.delete(batch);
    this.#inFlightBytes -= batch.bytes;
    if (err) this.#fail(err, false);
    const cbErr = err ?? null;
    for (const e of batch.entries) if (e.cb) callSafely(() => e.cb!(cbErr));
    this.#checkDrain();
    this.#maybeWriteFinished();
  }

  #checkDrain(): void {
    const d = this.#drainDeferred;
    if (d !== undefined && !this.#needsDrain()) {
      this.#drainDeferred = undefined;
      d.resolve();
    }
  }

  #maybeWriteFinished(): void {
    if (this.#writeFinished || !this.#endSent || this.#inFlight.size > 0 || !this.#sendable()) return;
    this.#writeFinished = true;
    this.#endDeferred?.resolve();
    this.#maybeClosed();
  }

  #maybeClosed(): void {
    if (!this.#writeFinished || !this.#remoteEnded || !this.#sendable()) return;
    this.#state = 'closed';
    this.#closeDeferred?.resolve();
    const d = this.#drainDeferred;
    this.#drainDeferred = undefined;
    d?.reject(this.#closedError('drain'));
    try {
      this.sendClose();
    } finally {
      this.#resolveClosed();
    }
  }

  #scheduleDeliver(): void {
    if (this.#deliverScheduled || this.#reader === undefined) return;
    this.#deliverScheduled = true;
    // never call the reader from inside setReader()/resume(): the caller may not be ready yet
    queueMicrotask(() => {
      this.#deliverScheduled = false;
      this.#deliver();
    });
  }

  #deliver(): void {
    if (this.#delivering || this.#state === 'aborted') return;
    this.#delivering = true;
    try {
      let reader: StreamReader | undefined;
      while ((reader = this.#reader) !== undefined && !this.#paused && this.#inboundHead < this.#inbound.length) {
        const chunk = this.#inbound[this.#inboundHead]!;
        this.#inbound[this.#inboundHead++] = undefined as unknown as Buffer;
        this.#inboundBytes -= chunk.byteLength;
        reader.data(chunk);
        if (this.#aborted()) return;
        this.onConsumed(chunk.byteLength);
      }
      if (this.#inboundHead === this.#inbound.length) {
        this.#inbound = [];
        this.#inboundHead = 0;
      }
      reader = this.#reader;
      if (reader !== undefined && this.#remoteEnded && !this.#endDelivered && this.#inboundBytes === 0) {
        this.#endDelivered = true;
        reader.end();
      }
    } catch (err) {
      this.#fail(toError(err), true);
    } finally {
      this.#delivering = false;
    }
  }

  #deliverError(): void {
    const reader = this.#reader;
    if (reader === undefined || this.#errorDelivered || this.#endDelivered) return;
    this.#errorDelivered = true;
    callSafely(() => reader.error(this.#abortError!));
  }

  #fail(err: Error, local: boolean): void {
    if (this.#state === 'closed' || this.#state === 'aborted') return;
    this.#state = 'aborted';
    this.#abortError = err;
    const queued = this.#queue;
    const batches = [...this.#inFlight];
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#inFlight.clear();
    this.#inFlightBytes = 0;
    for (const b of batches) b.settled = true;
    this.#inbound = [];
    this.#inboundHead = 0;
    this.#inboundBytes = 0;
    this.#endDeferred?.reject(err);
    this.#closeDeferred?.reject(err);
    const drain = this.#drainDeferred;
    this.#drainDeferred = undefined;
    drain?.reject(err);
    // callbacks run after the abort() call returns, as a socket would report them
    queueMicrotask(() => {
      for (const e of queued) if (e.cb) callSafely(() => e.cb!(err));
      for (const b of batches) for (const e of b.entries) if (e.cb) callSafely(() => e.cb!(err));
      this.#deliverError();
    });
    try {
      if (local) this.sendAbort(err);
    } finally {
      this.#resolveClosed();
    }
  }
}
