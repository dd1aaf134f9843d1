import { ConnectionClosedError, ErrorCodes, SmartcopyError } from '@smartcopy/protocol';
import { AbstractStream } from '../abstract-stream.js';
import type { AbstractStreamInit, WriteCallback } from '../abstract-stream.js';
import type { NativeConnection } from './binding.js';

/**
 * First byte of every stream, sent by the opener. QUIC tells the peer about a stream only
 * when bytes (or a FIN) arrive on it; the marker makes openStream() visible to the listener at
 * once, before the opener writes anything. The listener strips it.
 */
export const STREAM_OPEN_MARKER = 0x53;
const MARKER = Buffer.from([STREAM_OPEN_MARKER]);
const EMPTY = Buffer.alloc(0);

/**
 * Incoming bytes read ahead of a reader that is not installed yet. Beyond it the bytes stay in
 * quiche, whose flow control then holds the peer back.
 */
export const QUIC_READ_AHEAD = 1024 * 1024;

/** The connection side of a stream (implemented by the connection driver). */
export interface StreamHost {
  readonly conn: NativeConnection;
  readonly remoteAddress: string;
  readonly shutdownRead: number;
  readonly shutdownWrite: number;
  /** the stream has bytes or a FIN for quiche: push them in the next flush */
  wantWrite(s: QuicStream): void;
  /** something changed that needs a flush (resume, credit) */
  wake(): void;
  /** space to read into: a view of the current receive slab (at least 64 KiB) */
  readSpace(): Buffer;
  /** the first n bytes of readSpace() as a chunk owned by the reader */
  takeRead(n: number): Buffer;
  /** quiche created the stream (its first streamSend happened) */
  born(s: QuicStream): void;
  /**
   * The stream is done: forget it. `clean`: it closed normally, and quiche may still hold its
   * last bytes or FIN unsent or unacknowledged.
   */
  retire(s: QuicStream, clean: boolean): void;
  /** a peer-opened stream sent its marker: hand it to the application */
  announce(s: QuicStream): void;
}

interface OutWrite {
  readonly chunks: readonly Uint8Array[];
  idx: number;
  off: number;
  readonly done: WriteCallback | undefined;
}

/** quiche's error text ("StreamReset(5)") as the peer's SmartcopyError code name. */
function peerCode(message: string): string | undefined {
  const m = /^Stream(?:Reset|Stopped)\((\d+)\)$/.exec(message);
  if (!m) return undefined;
  const wire = Number(m[1]);
  for (const [name, info] of Object.entries(ErrorCodes)) if (info.wire === wire) return name;
  return `code ${wire}`;
}

/**
 * One QUIC bidirectional stream. Writes are handed to quiche (which copies them into its send
 * buffer) as congestion and flow control allow; the write callback runs once quiche took every
 * byte. Reads come out of quiche only while the reader keeps up: a paused stream leaves its
 * bytes in quiche, so quiche stops extending the peer's stream window and the peer's writes
 * stall — real backpressure, not a growing buffer.
 */
export class QuicStream extends AbstractStream {
  readonly streamId: number;
  readonly remoteAddress: string;
  readonly #host: StreamHost;
  readonly #out: OutWrite[] = [];
  #outBytes = 0;
  #refused = false;
  #born: boolean;
  #finPending = false;
  #finSent = false;
  #retireAfterFin = false;
  #paused = false;
  #throttled = false;
  #finReceived = false;
  #awaitingMarker: boolean;
  #dead = false;

  /**
   * `opener`: we opened it (the marker goes out first); otherwise the peer did and its first
   * byte must be the marker.
   */
  constructor(host: StreamHost, streamId: number, opener: boolean, init: Omit<AbstractStreamInit, 'id'>) {
    super({ ...init, id: `quic:${host.remoteAddress}/${streamId}` });
    this.#host = host;
    this.streamId = streamId;
    this.remoteAddress = host.remoteAddress;
    this.#awaitingMarker = !opener;
    this.#born = !opener;
    if (opener) {
      this.#out.push({ chunks: [MARKER], idx: 0, off: 0, done: undefined });
      this.#outBytes = 1;
      host.wantWrite(this);
    }
  }

  // ---- AbstractStream hooks --------------------------------------------------------------

  protected override sendData(chunks: readonly Uint8Array[], done: WriteCallback): boolean {
    let bytes = 0;
    for (const c of chunks) bytes += c.byteLength;
    this.#out.push({ chunks, idx: 0, off: 0, done });
    this.#outBytes += bytes;
    this.#host.wantWrite(this);
    if (this.#outBytes < this.highWaterMark) return true;
    this.#refused = true;
    return false;
  }

  protected override sendEnd(): void {
    this.#finPending = true;
    this.#host.wantWrite(this);
  }

  protected override sendAbort(err: Error): void {
    const code = err instanceof SmartcopyError ? err.wireCode : ErrorCodes.SC_ERR_ABORTED.wire;
    this.#shutdown(code);
    this.#host.wake();
  }

  protected override sendPause(): void {
    this.#paused = true;
  }

  protected override sendResume(): void {
    this.#paused = false;
    this.#host.wake();
  }

  protected override sendClose(): void {
    if (this.#finSent) this.#host.retire(this, true);
    else this.#retireAfterFin = true;
  }

  protected override onConsumed(): void {
    if (this.#throttled && this.readBufferedBytes < QUIC_READ_AHEAD / 2) {
      this.#throttled = false;
      this.#host.wake();
    }
  }

  // ---- driven by the connection ---------------------------------------------------------

  /** Push queued bytes (then the FIN) into quiche. True when nothing is left to push. */
  pushOut(): boolean {
    const conn = this.#host.conn;
    const out = this.#out;
    for (;;) {
      while (out.length > 0) {
        if (this.#dead) return true;
        const w = out[0]!;
        while (w.idx < w.chunks.length) {
          const c = w.chunks[w.idx]!;
          const len = c.byteLength - w.off;
          if (len === 0) {
            w.idx++;
            w.off = 0;
            continue;
          }
          let n: number | null;
          try {
            n = conn.streamSend(this.streamId, w.off === 0 ? c : c.subarray(w.off), false);
          } catch (err) {
            this.#failed(err);
            return true;
          }
          if (!this.#born) {
            // quiche creates the stream on the first call, even one that took no bytes
            this.#born = true;
            this.#host.born(this);
          }
          if (n === null) return false;
          this.#outBytes -= n;
          if (n < len) {
            w.off += n;
            return false;
          }
          w.idx++;
          w.off = 0;
        }
        out.shift();
        w.done?.(null);
      }
      if (!this.#refused || this.#dead) break;
      // the stream refused data earlier: let it hand over more now, and push that too
      this.#refused = false;
      this.notifyWritable();
      if (out.length === 0) break;
    }
    if (this.#finPending && !this.#finSent && !this.#dead) {
      let r: number | null;
      try {
        r = conn.streamSend(this.streamId, EMPTY, true);
      } catch (err) {
        this.#failed(err);
        return true;
      }
      if (r === null) return false;
      this.#finSent = true;
      if (this.#retireAfterFin) this.#host.retire(this, true);
    }
    return true;
  }

  /** Move readable bytes from quiche to the reader, unless it is paused or far behind. */
  pullIn(): void {
    const host = this.#host;
    const conn = host.conn;
    while (!this.#dead && !this.#finReceived) {
      if (this.#paused || this.readBufferedBytes >= QUIC_READ_AHEAD) {
        this.#throttled = !this.#paused;
        // a zero-length read consumes nothing but still reports a reset or a bare FIN
        this.#recv(conn, EMPTY, false);
        return;
      }
      if (!this.#recv(conn, host.readSpace(), true)) return;
    }
  }

  /** false when there is nothing more to read now */
  #recv(conn: NativeConnection, into: Buffer, take: boolean): boolean {
    let r: [number, boolean] | null;
    try {
      r = conn.streamRecv(this.streamId, into);
    } catch (err) {
      this.#failed(err);
      return false;
    }
    if (r === null) return false;
    const [n, fin] = r;
    if (n > 0 && take) {
      let chunk = this.#host.takeRead(n);
      if (this.#awaitingMarker) {
        if (chunk[0] !== STREAM_OPEN_MARKER) {
          this.abort(new SmartcopyError('SC_ERR_PROTOCOL', `QUIC stream ${this.streamId} from ${this.remoteAddress} is not a smartcopy stream (bad first byte)`));
          return false;
        }
        this.#awaitingMarker = false;
        chunk = chunk.subarray(1);
        this.#host.announce(this);
        if (this.#dead) return false;
      }
      if (chunk.byteLength > 0) this.pushIncoming(chunk);
    }
    if (fin) {
      this.#finReceived = true;
      if (this.#awaitingMarker) {
        // opened and finished without a marker: nothing the application ever saw
        this.#dead = true;
        this.#host.retire(this, false);
        return false;
      }
      this.remoteEnded();
      return false;
    }
    return n > 0;
  }

  /** true once the peer's first byte arrived (peer-opened streams only) */
  get announced(): boolean {
    return !this.#awaitingMarker;
  }

  /** The connection is gone: fail the stream without telling the peer (it cannot hear). */
  connectionLost(err: Error): void {
    this.#dead = true;
    this.#out.length = 0;
    this.remoteAborted(err);
  }

  #failed(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const code = peerCode(message);
    const what = message.startsWith('StreamStopped') ? 'stopped reading' : 'reset';
    const e =
      code === undefined
        ? new ConnectionClosedError(`QUIC stream ${this.streamId} to ${this.remoteAddress} failed: ${message}`, { cause: err })
        : new ConnectionClosedError(`QUIC stream ${this.streamId} was ${what === 'reset' ? 'reset' : 'refused'} by ${this.remoteAddress} (${code})`, {
            cause: err,
          });
    this.#shutdown(ErrorCodes.SC_ERR_ABORTED.wire);
    this.#host.wake();
    this.remoteAborted(e);
  }

  #shutdown(code: number): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#out.length = 0;
    const host = this.#host;
    if (!this.#born) {
      // its id is taken either way (a later stream opens it implicitly): create it in quiche,
      // so the stream-credit count stays exact, and reset it like any other
      this.#born = true;
      host.born(this);
      try {
        host.conn.streamSend(this.streamId, EMPTY, false);
      } catch {
        // the connection is going away
      }
    }
    try {
      host.conn.streamShutdown(this.streamId, host.shutdownWrite, code);
    } catch {
      // already finished or reset in that direction
    }
    try {
      host.conn.streamShutdown(this.streamId, host.shutdownRead, code);
    } catch {
      // likewise
    }
    host.retire(this, false);
  }
}
