import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import type { Connection, Stream, TransportFeatures } from './types.js';

/** The reason an AbortSignal fired, as a SmartcopyError (a timeout signal maps to SC_ERR_TIMEOUT). */
export function abortReason(signal: AbortSignal, what: string): SmartcopyError {
  const reason: unknown = signal.reason;
  if (reason instanceof SmartcopyError) return reason;
  if (reason instanceof Error && reason.name === 'TimeoutError') {
    return new SmartcopyError('SC_ERR_TIMEOUT', `${what}: timed out`, { cause: reason, retryable: true });
  }
  return new SmartcopyError('SC_ERR_ABORTED', `${what}: aborted`, { cause: reason });
}

/**
 * Connection lifecycle shared by all transports: tracks the streams it opened, refuses
 * openStream() after close, closes (gracefully) or aborts them all. Subclasses open streams.
 */
export abstract class AbstractConnection implements Connection {
  abstract readonly features: TransportFeatures;
  readonly remoteAddress: string;
  readonly closed: Promise<void>;
  readonly #streams = new Set<Stream>();
  #state: 'open' | 'closing' | 'closed' = 'open';
  #closing: Promise<void> | undefined;
  #resolveClosed!: () => void;

  constructor(remoteAddress: string) {
    this.remoteAddress = remoteAddress;
    this.closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  /** open one new stream to the peer */
  protected abstract newStream(opts: { signal?: AbortSignal }): Promise<Stream>;
  /** release connection-level resources once every stream is closed or aborted */
  protected onClose(_err?: Error): void {}

  get state(): 'open' | 'closing' | 'closed' {
    return this.#state;
  }

  /** streams opened on this connection that are not yet closed */
  get openStreams(): number {
    return this.#streams.size;
  }

  async openStream(opts: { signal?: AbortSignal } = {}): Promise<Stream> {
    this.#assertOpen();
    if (opts.signal?.aborted) throw abortReason(opts.signal, `open stream to ${this.remoteAddress}`);
    const stream = await this.newStream(opts);
    if (this.#state !== 'open') {
      stream.abort(new ConnectionClosedError(`connection to ${this.remoteAddress} closed while opening a stream`));
      this.#assertOpen();
    }
    this.#streams.add(stream);
    void stream.closed.then(() => this.#streams.delete(stream));
    return stream;
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#state = 'closing';
    // a stream that fails to close cleanly is aborted by its own error path; the connection
    // is closed either way
    this.#closing = Promise.allSettled([...this.#streams].map((s) => s.close())).then(() => this.#finish());
    return this.#closing;
  }

  abort(err?: Error): void {
    if (this.#state === 'closed') return;
    const e = err ?? new SmartcopyError('SC_ERR_ABORTED', `connection to ${this.remoteAddress} aborted`);
    this.#state = 'closing';
    for (const s of this.#streams) s.abort(e);
    this.#finish(e);
  }

  #finish(err?: Error): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    try {
      this.onClose(err);
    } finally {
      this.#resolveClosed();
    }
  }

  #assertOpen(): void {
    if (this.#state !== 'open') {
      throw new ConnectionClosedError(`cannot open a stream: the connection to ${this.remoteAddress} is ${this.#state}`);
    }
  }
}
