import type { RemoteInfo } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { ConnectionClosedError, ErrorCodes, SmartcopyError } from '@smartcopy/protocol';
import type { AbstractStreamInit } from '../abstract-stream.js';
import { abortReason } from '../abstract-connection.js';
import type { NativeConnection, NativeConnectionError, NativeRecvInfo, Quiche } from './binding.js';
import type { Flushable, UdpEndpoint } from './endpoint.js';
import { QuicStream } from './quic-stream.js';
import type { StreamHost } from './quic-stream.js';

/**
 * Receive slabs: chunks handed to readers are views of these, never reused (the reader owns
 * them). One allocation per SLAB_BYTES received instead of one per chunk.
 */
const SLAB_BYTES = 256 * 1024;
const SLAB_MIN_SPACE = 64 * 1024;

/** TLS alert names for the errors a user can meet (RFC 8446 §6). */
const TLS_ALERTS: Record<number, string> = {
  40: 'handshake_failure',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  44: 'certificate_revoked',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  48: 'unknown_ca',
  80: 'internal_error',
  120: 'no_application_protocol',
};
const CRYPTO_ERROR_START = 0x100;
const CRYPTO_ERROR_STOP = 0x1ff;
/**
 * A graceful close waits at most this long for quiche to deliver the last bytes and FINs of the
 * streams that closed (a dead peer would otherwise hold it for the whole idle timeout).
 */
export const QUIC_CLOSE_LINGER_MS = 3000;

/** CONNECTION_CLOSE code a client sends when it refuses the server's certificate */
export const BAD_CERTIFICATE = CRYPTO_ERROR_START + 42;

function codeName(wire: number): string {
  for (const [name, info] of Object.entries(ErrorCodes)) if (info.wire === wire) return name;
  return `code ${wire}`;
}

function describeTls(code: number): string {
  const alert = code - CRYPTO_ERROR_START;
  return `TLS alert ${alert}${TLS_ALERTS[alert] ? ` (${TLS_ALERTS[alert]})` : ''}`;
}

function reasonText(e: NativeConnectionError): string {
  const r = Buffer.from(e.reason).toString('utf8').replace(/\s+/g, ' ').trim();
  return r === '' ? '' : `: ${r}`;
}

export interface CoreEvents {
  /** the handshake completed (client: before its certificate check) */
  onEstablished?(): void;
  /** a peer-opened stream sent its first byte */
  onPeerStream?(stream: QuicStream): void;
  /** the connection is gone; `err` says why (a clean local close passes undefined) */
  onClosed?(err: Error | undefined): void;
}

export interface CoreInit {
  q: Quiche;
  conn: NativeConnection;
  endpoint: UdpEndpoint;
  isServer: boolean;
  remoteAddress: string;
  /** our connection id (servers route short-header packets on it) */
  scid: Buffer;
  local: { host: string; port: number };
  peer: { host: string; port: number };
  idleTimeoutMs: number;
  /** send a PING this often while idle so the peer's idle timer does not fire (0: never) */
  keepAliveMs: number;
  streamInit: Omit<AbstractStreamInit, 'id'>;
}

/**
 * Drives one quiche connection: feeds it datagrams, runs its timers, moves stream bytes in and
 * out, and sends what it produces. Shared by the client connection and the listener.
 */
export class QuicDriver implements Flushable, StreamHost {
  readonly conn: NativeConnection;
  readonly endpoint: UdpEndpoint;
  readonly isServer: boolean;
  readonly remoteAddress: string;
  readonly scid: Buffer;
  readonly shutdownRead: number;
  readonly shutdownWrite: number;
  events: CoreEvents = {};

  readonly #streamInit: Omit<AbstractStreamInit, 'id'>;
  readonly #idleTimeoutMs: number;
  #recvInfo: NativeRecvInfo;
  readonly #streams = new Map<number, QuicStream>();
  readonly #writers = new Set<QuicStream>();
  #state: 'open' | 'closed' = 'open';
  #established = false;
  #closeError: Error | undefined;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;
  /** streams that closed cleanly and that quiche has not finished with (data or FIN in flight) */
  readonly #lingering = new Set<number>();
  #closeWhenDrained = false;
  #lingerTimer: NodeJS.Timeout | undefined;

  // stream ids: ours count up from 0 (client) or 1 (server) in steps of 4; the peer's are
  // tracked by the highest seen plus the lower ones not seen yet (they may arrive out of order)
  #nextLocalId: number;
  #unborn = 0;
  #peerHigh: number;
  readonly #peerGaps = new Set<number>();
  readonly #creditWaiters: { resolve(): void; reject(err: Error): void }[] = [];

  #timer: NodeJS.Timeout | undefined;
  #deadline = 0;
  #keepAlive: NodeJS.Timeout | undefined;

  // allocated on first read: an idle connection holds none
  #slab: Buffer = Buffer.alloc(0);
  #slabOff = 0;

  constructor(init: CoreInit) {
    this.conn = init.conn;
    this.endpoint = init.endpoint;
    this.isServer = init.isServer;
    this.remoteAddress = init.remoteAddress;
    this.scid = init.scid;
    this.shutdownRead = init.q.Shutdown.Read;
    this.shutdownWrite = init.q.Shutdown.Write;
    this.#streamInit = init.streamInit;
    this.#idleTimeoutMs = init.idleTimeoutMs;
    this.#recvInfo = { from: { ...init.peer }, to: { ...init.local } };
    this.#done = new Promise<void>((resolve) => (this.#resolveDone = resolve));
    this.#nextLocalId = init.isServer ? 1 : 0;
    this.#peerHigh = init.isServer ? -4 : -3;
    if (init.keepAliveMs > 0) {
      this.#keepAlive = setInterval(() => {
        try {
          this.conn.sendAckEliciting();
        } catch {
          // closing: nothing to keep alive
        }
        this.endpoint.markDirty(this);
      }, init.keepAliveMs);
    }
  }

  /** One datagram from the peer. Processing waits for the flush at the end of this turn. */
  recv(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.#state !== 'open') return;
    let info = this.#recvInfo;
    if (rinfo.port !== info.from.port || rinfo.address !== info.from.host) {
      // NAT rebinding: quiche validates the new path itself
      info = this.#recvInfo = { from: { host: rinfo.address, port: rinfo.port }, to: info.to };
    }
    try {
      this.conn.recv(msg, info);
    } catch {
      // quiche closed the connection (its local error says why) or dropped the packet;
      // the flush finds out which
    }
    this.endpoint.markDirty(this);
  }

  flush(): void {
    if (this.#state !== 'open') return;
    const conn = this.conn;
    if (!this.#established && conn.isEstablished()) {
      this.#established = true;
      this.events.onEstablished?.();
      if (this.#state !== 'open') return;
    }
    if (this.#established) {
      for (const id of conn.readable()) {
        this.#readable(id);
        if (this.#state !== 'open') return;
      }
      for (const s of this.#writers) if (s.pushOut()) this.#writers.delete(s);
      if (this.#state !== 'open') return;
      if (this.#creditWaiters.length > 0) this.#grantCredit();
    }
    let finished: boolean;
    try {
      finished = this.endpoint.sendPass(conn, this);
    } catch (err) {
      this.#fail(new SmartcopyError('SC_ERR_INTERNAL', `QUIC connection to ${this.remoteAddress}: send failed: ${(err as Error).message}`, { cause: err }));
      return;
    }
    if (conn.isClosed() || conn.isDraining()) {
      this.#finish(this.#closeReason());
      return;
    }
    if (this.#lingering.size > 0) this.#pruneLingering();
    if (this.#closeWhenDrained && this.#drained()) {
      this.close();
      return;
    }
    if (!finished && !this.endpoint.isClosed) this.endpoint.markDirty(this);
    this.#armTimer();
  }

  /** nothing left for quiche to take from a stream, nor in flight for a stream that closed */
  #drained(): boolean {
    return this.#writers.size === 0 && this.#lingering.size === 0;
  }

  /** Forget the streams quiche has collected: all their bytes were delivered and acknowledged. */
  #pruneLingering(): void {
    for (const id of this.#lingering) {
      try {
        this.conn.streamCapacity(id);
      } catch {
        // InvalidStreamState: collected (or stopped by the peer, which is as final)
        this.#lingering.delete(id);
      }
    }
  }

  // ---- StreamHost ---------------------------------------------------------------------------

  wantWrite(s: QuicStream): void {
    if (this.#state !== 'open') return;
    this.#writers.add(s);
    this.endpoint.markDirty(this);
  }

  wake(): void {
    if (this.#state === 'open') this.endpoint.markDirty(this);
  }

  readSpace(): Buffer {
    if (this.#slab.byteLength - this.#slabOff < SLAB_MIN_SPACE) {
      this.#slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.#slabOff = 0;
    }
    return this.#slab.subarray(this.#slabOff);
  }

  takeRead(n: number): Buffer {
    const chunk = this.#slab.subarray(this.#slabOff, this.#slabOff + n);
    this.#slabOff += n;
    return chunk;
  }

  born(): void {
    this.#unborn--;
  }

  retire(s: QuicStream, clean: boolean): void {
    this.#streams.delete(s.streamId);
    this.#writers.delete(s);
    if (clean && this.#state === 'open') {
      this.#lingering.add(s.streamId);
      this.endpoint.markDirty(this);
    }
  }

  announce(s: QuicStream): void {
    const on = this.events.onPeerStream;
    if (on === undefined) {
      s.abort(new SmartcopyError('SC_ERR_PROTOCOL', `QUIC peer ${this.remoteAddress} may not open streams here`));
      return;
    }
    on(s);
  }

  // ---- streams --------------------------------------------------------------------------------

  /** Open a bidirectional stream, waiting for the peer to allow one more if needed. */
  async openStream(signal?: AbortSignal): Promise<QuicStream> {
    while (this.#credit() <= 0) await this.#waitCredit(signal);
    if (this.#state !== 'open') throw this.#closedError();
    const id = this.#nextLocalId;
    this.#nextLocalId += 4;
    this.#unborn++;
    const s = new QuicStream(this, id, true, this.#streamInit);
    this.#streams.set(id, s);
    return s;
  }

  #credit(): number {
    if (this.#state !== 'open') throw this.#closedError();
    return this.conn.peerStreamsLeftBidi() - this.#unborn;
  }

  #waitCredit(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal, `open stream to ${this.remoteAddress}`));
        return;
      }
      const onAbort = (): void => {
        const i = this.#creditWaiters.indexOf(waiter);
        if (i >= 0) this.#creditWaiters.splice(i, 1);
        reject(abortReason(signal!, `open stream to ${this.remoteAddress}`));
      };
      const waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#creditWaiters.push(waiter);
    });
  }

  #grantCredit(): void {
    let credit = this.conn.peerStreamsLeftBidi() - this.#unborn;
    while (credit-- > 0 && this.#creditWaiters.length > 0) this.#creditWaiters.shift()!.resolve();
  }

  #readable(id: number): void {
    const s = this.#streams.get(id);
    if (s !== undefined) {
      s.pullIn();
      return;
    }
    if (this.#isNewPeerStream(id)) {
      const ns = new QuicStream(this, id, false, this.#streamInit);
      this.#streams.set(id, ns);
      ns.pullIn();
      return;
    }
    // a stream we already finished or aborted: discard what still arrives on it
    try {
      this.conn.streamShutdown(id, this.shutdownRead, ErrorCodes.SC_ERR_ABORTED.wire);
    } catch {
      // already shut
    }
  }

  #isNewPeerStream(id: number): boolean {
    // bidirectional (bit 1 clear) and opened by the peer (bit 0: 0 = client, 1 = server)
    if ((id & 2) !== 0 || (id & 1) !== (this.isServer ? 0 : 1)) return false;
    if (id > this.#peerHigh) {
      for (let g = this.#peerHigh + 4; g < id; g += 4) this.#peerGaps.add(g);
      this.#peerHigh = id;
      return true;
    }
    return this.#peerGaps.delete(id);
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  /** settles once the connection is closed and its final packets were handed to the socket */
  get done(): Promise<void> {
    return this.#done;
  }

  /**
   * Close once the streams' last bytes and FINs went into quiche and were delivered (at most
   * QUIC_CLOSE_LINGER_MS), then as close(): CONNECTION_CLOSE sent right away would make quiche
   * drop a FIN not yet sent, and the peer would see its stream aborted. (A stream counts as
   * closed once its FIN is queued, which can be a flush before quiche has it.)
   */
  closeGracefully(): Promise<void> {
    if (this.#state !== 'open') return this.#done;
    this.#pruneLingering();
    if (this.#drained()) {
      this.close();
      return this.#done;
    }
    this.#closeWhenDrained = true;
    this.#lingerTimer = setTimeout(() => this.close(), QUIC_CLOSE_LINGER_MS);
    this.endpoint.markDirty(this);
    return this.#done;
  }

  /**
   * Close now: CONNECTION_CLOSE goes out (application code 0, or the error's wire code), open
   * streams fail with `err`. The endpoint owner closes the socket from onClosed.
   */
  close(err?: Error): void {
    if (this.#state !== 'open') return;
    const code = err === undefined ? 0 : err instanceof SmartcopyError ? err.wireCode : ErrorCodes.SC_ERR_ABORTED.wire;
    const reason = err === undefined ? 'closed' : err.message.slice(0, 200);
    try {
      this.conn.close(true, code, Buffer.from(reason));
    } catch {
      // already closing
    }
    this.#sendFinal();
    this.#finish(err, err ?? new ConnectionClosedError(`QUIC connection to ${this.remoteAddress} closed`));
  }

  /** Refuse the peer after the handshake (a certificate check failed) with a TLS-style code. */
  refuse(code: number, err: Error): void {
    if (this.#state !== 'open') return;
    try {
      this.conn.close(false, code, Buffer.alloc(0));
    } catch {
      // already closing
    }
    this.#sendFinal();
    this.#finish(err);
  }

  /** The socket failed under the connection (ICMP port unreachable, …). */
  fail(err: Error): void {
    this.#fail(err);
  }

  #fail(err: Error): void {
    if (this.#state !== 'open') return;
    try {
      this.conn.close(true, ErrorCodes.SC_ERR_INTERNAL.wire, Buffer.alloc(0));
    } catch {
      // already closing
    }
    this.#sendFinal();
    this.#finish(err);
  }

  #sendFinal(): void {
    try {
      this.endpoint.sendPass(this.conn, this);
    } catch {
      // the peer learns from its idle timeout instead
    }
  }

  #finish(err: Error | undefined, streamErr: Error | undefined = err): void {
    if (this.#state !== 'open') return;
    this.#state = 'closed';
    this.#closeError = err;
    clearTimeout(this.#timer);
    clearInterval(this.#keepAlive);
    clearTimeout(this.#lingerTimer);
    this.#timer = undefined;
    this.#keepAlive = undefined;
    this.#lingerTimer = undefined;
    this.#lingering.clear();
    const failure = streamErr ?? new ConnectionClosedError(`QUIC connection to ${this.remoteAddress} closed`);
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#writers.clear();
    for (const s of streams) s.connectionLost(failure);
    for (const w of this.#creditWaiters.splice(0)) w.reject(this.#closedError());
    try {
      this.events.onClosed?.(err);
    } finally {
      this.#resolveDone();
    }
  }

  #closedError(): ConnectionClosedError {
    const why = this.#closeError === undefined ? '' : `: ${this.#closeError.message}`;
    return new ConnectionClosedError(`cannot open a stream: the QUIC connection to ${this.remoteAddress} is closed${why}`, {
      cause: this.#closeError,
    });
  }

  #closeReason(): Error {
    const conn = this.conn;
    const addr = this.remoteAddress;
    if (conn.isTimedOut()) {
      return new SmartcopyError(
        'SC_ERR_TIMEOUT',
        `QUIC connection to ${addr} timed out: nothing heard from it for ${this.#idleTimeoutMs / 1000} s`,
        { retryable: true },
      );
    }
    const pe = conn.peerError();
    if (pe) {
      if (!pe.isApp && pe.errorCode >= CRYPTO_ERROR_START && pe.errorCode <= CRYPTO_ERROR_STOP) {
        const code = this.#established ? 'SC_ERR_AUTH' : 'SC_ERR_CONNECT';
        return new SmartcopyError(code, `QUIC peer ${addr} refused the TLS handshake: ${describeTls(pe.errorCode)}`);
      }
      if (pe.isApp && pe.errorCode === 0) return new ConnectionClosedError(`QUIC connection closed by ${addr}`);
      const what = pe.isApp ? codeName(pe.errorCode) : `transport error 0x${pe.errorCode.toString(16)}`;
      return new ConnectionClosedError(`QUIC connection closed by ${addr} (${what}${reasonText(pe)})`);
    }
    const le = conn.localError();
    if (le) {
      if (!le.isApp && le.errorCode >= CRYPTO_ERROR_START && le.errorCode <= CRYPTO_ERROR_STOP) {
        return new SmartcopyError('SC_ERR_AUTH', `cannot verify QUIC server ${addr}: ${describeTls(le.errorCode)}`);
      }
      const what = le.isApp ? codeName(le.errorCode) : `transport error 0x${le.errorCode.toString(16)}`;
      return new ConnectionClosedError(`QUIC connection to ${addr} failed (${what}${reasonText(le)})`);
    }
    return new ConnectionClosedError(`QUIC connection to ${addr} closed`);
  }

  #armTimer(): void {
    const ms = this.conn.timeout();
    if (ms === null) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      return;
    }
    const deadline = performance.now() + ms;
    if (this.#timer !== undefined && Math.abs(deadline - this.#deadline) < 1) return;
    clearTimeout(this.#timer);
    this.#deadline = deadline;
    this.#timer = setTimeout(this.#onTimer, ms);
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    if (this.#state !== 'open') return;
    this.conn.onTimeout();
    this.flush();
  };

  /** quiche's counters, plus the datagram size agreed with the peer */
  stats(): QuicConnectionStats {
    const s = this.conn.stats();
    const path = this.conn.pathStats()[0];
    return {
      maxDatagramSize: this.conn.maxSendUdpPayloadSize(),
      packetsSent: s.sent,
      packetsReceived: s.recv,
      packetsLost: s.lost,
      bytesSent: s.sentBytes,
      bytesReceived: s.recvBytes,
      bytesLost: s.lostBytes,
      rttMs: path?.rtt,
      cwnd: path?.cwnd,
    };
  }
}

export interface QuicConnectionStats {
  /** UDP payload size in use: the smaller of both ends' maxPayload */
  maxDatagramSize: number;
  packetsSent: number;
  packetsReceived: number;
  packetsLost: number;
  /** bytes of UDP payload, QUIC headers and encryption included */
  bytesSent: number;
  bytesReceived: number;
  bytesLost: number;
  rttMs: number | undefined;
  cwnd: number | undefined;
}
