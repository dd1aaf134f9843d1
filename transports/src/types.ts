/**
 * The transport contract. A transport knows nothing of files: it moves bytes on bidirectional
 * streams with backpressure. Every transport (memory, tcp, ssh-stdio, quic, webtransport)
 * implements these interfaces in its own folder and must pass `test/compliance.ts`.
 */

/** What a transport can do. Core code reads these flags; it never tests a transport's name. */
export interface TransportFeatures {
  /** both ends share one filesystem view (in-process): the receiver may copy from source paths */
  readonly sameHost: boolean;
  /** streams of one connection share one underlying connection (SSH, QUIC) */
  readonly multiplexed: boolean;
  /** bytes are encrypted on the wire */
  readonly encrypted: boolean;
}

/** Incoming side of a stream: a push-style reader. */
export interface StreamReader {
  /** a chunk arrived; the chunk is owned by the reader (the transport never reuses it) */
  data(chunk: Buffer): void;
  /** the peer ended its side cleanly */
  end(): void;
  /** the stream failed or was aborted (by either side) */
  error(err: Error): void;
}

export type StreamState = 'open' | 'closing' | 'closed' | 'aborted';

/**
 * One bidirectional byte stream.
 * - write() queues bytes in order and returns false once the queued bytes pass the high-water
 *   mark; await drain() before writing more. Writing after end()/close()/abort() throws
 *   ConnectionClosedError. `cb` runs once the bytes have been handed to the transport, after
 *   which the caller may reuse the buffers.
 * - end(): half-close (flush, then the peer's reader gets end()); reading continues.
 * - close(): end, then wait for the peer's end, then release; idempotent.
 * - abort(err): immediate; pending writes fail, both readers get error(); idempotent.
 */
export interface Stream {
  readonly id: string;
  readonly state: StreamState;
  /** bytes written by us / received from the peer so far (wire bytes) */
  readonly bytesWritten: number;
  readonly bytesRead: number;
  write(chunks: Uint8Array | readonly Uint8Array[], cb?: (err?: Error | null) => void): boolean;
  /** resolves when write() may be called again without exceeding the high-water mark */
  drain(): Promise<void>;
  /** install the reader; chunks that arrived earlier are delivered first, in order */
  setReader(reader: StreamReader): void;
  /** stop / restart delivery to the reader (backpressure toward the peer) */
  pause(): void;
  resume(): void;
  end(): Promise<void>;
  close(): Promise<void>;
  abort(err?: Error): void;
  /** settles when the stream is fully closed or aborted (never rejects) */
  readonly closed: Promise<void>;
}

export interface DialOptions {
  signal?: AbortSignal;
  /** connect timeout in ms */
  timeoutMs?: number;
}

/** A client-side connection to one peer; opens streams on it. */
export interface Connection {
  readonly features: TransportFeatures;
  readonly remoteAddress: string;
  openStream(opts?: { signal?: AbortSignal }): Promise<Stream>;
  close(): Promise<void>;
  abort(err?: Error): void;
  readonly closed: Promise<void>;
}

export interface ListenOptions {
  host?: string;
  port?: number;
  signal?: AbortSignal;
}

export interface Listener {
  /** where it listens: "127.0.0.1:9878" for TCP, a name for memory */
  readonly address: string;
  readonly port: number;
  /** stop accepting; with abortStreams, abort the streams it accepted too */
  close(opts?: { abortStreams?: boolean }): Promise<void>;
}

export interface Transport {
  readonly kind: string;
  readonly features: TransportFeatures;
  dial(address: string, opts?: DialOptions): Promise<Connection>;
  /** every stream a peer opens is handed to onStream (agent side) */
  listen(opts: ListenOptions, onStream: (stream: Stream) => void): Promise<Listener>;
}

/** Defaults shared by every transport (named, documented constants). */
export const STREAM_HIGH_WATER_MARK = 4 * 1024 * 1024;
/** a stream whose unread incoming bytes exceed this while paused is aborted */
export const STREAM_MAX_BUFFERED = 64 * 1024 * 1024;
export const CONNECT_TIMEOUT_MS = 10_000;
