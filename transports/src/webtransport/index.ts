/**
 * # WebTransport transport
 *
 * One WebTransport session per `Connection`, one bidirectional WebTransport stream per `Stream`,
 * on `@fails-components/webtransport`. WebTransport over HTTP/2 runs on TCP with TLS, so it
 * passes firewalls that drop UDP; over HTTP/3 it runs on QUIC.
 *
 * ## HTTP/2 or HTTP/3
 * The package's HTTP/3 half is a separate, optional package with a native binary downloaded from
 * outside the npm registry. When it loads, the listener serves both (TCP and UDP on one port
 * number) and the client tries HTTP/3 first, falling back to HTTP/2; otherwise both ends use
 * HTTP/2 only. `http3: false` forces HTTP/2. The connection tells which one it got (`http`).
 *
 * ## Server identity
 * The package checks the server's certificate itself and does not show it. It supports two
 * checks (hashes, or a CA), and a hook is built on top of the first:
 * - `serverCertificateHashes`: fingerprints (`SHA256:<base64>` or hex, as normalizeFingerprint
 *   takes them; see certificateFingerprint) of the certificates to accept. This is how a
 *   self-signed agent certificate is pinned. WebTransport accepts a pinned certificate only if
 *   it is valid for at most 14 days, so such an agent must renew its certificate (see
 *   generateWebTransportCertificate; renewing with the same key keeps publicKeyFingerprint).
 * - neither hashes nor a hook: the certificate must chain to a CA Node trusts and name the host
 *   (the package offers no way to add a CA).
 * - `verifyPeer(peer)` (same shape as the QUIC transport's, so one trust-on-first-use hook serves
 *   both): the client first fetches the certificate with a plain TLS handshake
 *   (fetchWebTransportCertificate), the hook decides, and the certificate it saw is then pinned
 *   by hash for the session itself, so the session cannot end up with another certificate.
 *   With both hashes and a hook, both must accept.
 * A refused certificate fails dial() with SC_ERR_AUTH saying why (wrong fingerprint, not trusted,
 * or valid too long to be pinned): after a failed handshake the client fetches the certificate to
 * tell these apart, because the package only reports "Opening handshake failed".
 *
 * ## Flow control: the upload stall
 * On sessions accepted through `sessionStream()` the package's HTTP/2 server advertises
 * `initialSessionFlowControlWindow` to the client but tracks its own receive window as
 * `sessionFlowControlWindowSizeLimit`, so with the defaults (16 KiB vs 15 MiB) it never sends a
 * window update and uploads stall after 16 KiB. Both are set to `sessionWindow` here; stream
 * windows start at `streamWindow` (no auto-tuning ramp) and are capped there, so a paused stream
 * holds at most `streamWindow` bytes of the peer's. The session window is shared by all streams
 * of the session: `sessionWindow / streamWindow` paused streams stop the others.
 *
 * HTTP/2 has flow control of its own under WebTransport's, which the package leaves at the
 * protocol's 64 KiB: a session then moves 64 KiB per round trip (measured ≈ 1.4 MiB/s at
 * 20 ms RTT). Each end widens its HTTP/2 receive windows (connection and streams) to
 * `http2Window` (default 2 MiB: ≈ 30–35 MiB/s at 20 ms RTT, 16 at 50 ms) when the session
 * opens. It cannot be much larger: Node's HTTP/2 stops reading its socket while a write to it
 * is pending, so when both directions are saturated and each side may have more in flight than
 * the kernel's socket buffers hold, both ends wait for each other forever. On this machine
 * (tcp_wmem max 4 MiB) 4 MiB windows never deadlocked, 8 MiB ones always did, with 16
 * streams saturating both directions; 2 MiB leaves a margin. Raise it only where
 * net.ipv4.tcp_wmem's maximum is at least twice the window on both hosts.
 *
 * ## Package limits worked around
 * - A stream closed cleanly never returns its stream credit, so a session could open only 100
 *   streams (the package's default credit); the listener grants `maxStreamsPerSession` instead.
 *   The package also keeps every stream's state until its session ends (≈ 8 KiB per stream and
 *   side), so a connection refuses to open more than that many streams (ConnectionClosedError,
 *   retryable: dial a new connection).
 * - Reading: see WebTransportStream. pause() uses the per-stream stopReading()/startReading()
 *   of the package's NativeHttpWTStream interface (which its HTTP/2 and HTTP/3 halves both
 *   implement), since the readable alone gives no backpressure.
 * - Writing copies the data once (WEBTRANSPORT_WRITE_CHUNK).
 * - The package mishandles data capsules of the stream with id 0 split across reads; that id is
 *   the first stream the *server* opens, and a listener here never opens streams.
 *
 * ## Closing
 * `Connection.close()` closes every stream gracefully, waits until each stream's FIN has been
 * handed to the session, then closes the session (CLOSE_WEBTRANSPORT_SESSION, code 0);
 * `abort(err)` resets the streams and closes the session with the error's wire code. The
 * HTTP/2 connection closes with its session. A session closed by the peer aborts the
 * connection's streams with ConnectionClosedError. `listener.close()` stops accepting;
 * `{ abortStreams: true }` also aborts the accepted streams and closes their sessions.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { ConnectionClosedError, ErrorCodes, SmartcopyError } from '@smartcopy/protocol';
import { AbstractConnection, abortReason } from '../abstract-connection.js';
import { normalizeFingerprint } from '../quic/cert.js';
import { formatHostPort, parseHostPort } from '../tcp/connect.js';
import type { HostPort } from '../tcp/connect.js';
import { CONNECT_TIMEOUT_MS } from '../types.js';
import type { DialOptions, Listener, ListenOptions, Stream, Transport, TransportFeatures } from '../types.js';
import { certificateHashes, fetchWebTransportCertificate, pinnableProblem } from './certificate.js';
import type { WebTransportPeerIdentity, WebTransportVerifyPeer } from './certificate.js';
import { loadWebTransport } from './load.js';
import type {
  H2Session,
  WtBidiStream,
  WtClientSession,
  WtCloseInfo,
  WtNativeSession,
  WtReadControl,
  WtServerInit,
  WtServerSession,
  WtStreamObject,
} from './load.js';
import { WebTransportStream } from './webtransport-stream.js';

export {
  certificateHashes,
  fetchWebTransportCertificate,
  generateWebTransportCertificate,
  pinnableProblem,
  publicKeyFingerprint,
  validityDays,
  WEBTRANSPORT_CERT_DAYS,
  WEBTRANSPORT_MAX_CERT_DAYS,
} from './certificate.js';
export type {
  ProbeOptions,
  WebTransportCertificate,
  WebTransportCertificateOptions,
  WebTransportPeerIdentity,
  WebTransportVerifyPeer,
} from './certificate.js';
export { WEBTRANSPORT_WRITE_CHUNK, WebTransportStream } from './webtransport-stream.js';

export const WEBTRANSPORT_FEATURES: TransportFeatures = Object.freeze({ sameHost: false, multiplexed: true, encrypted: true });

/** The port a WebTransport agent listens on when an address names none (QUIC has 4433). */
export const DEFAULT_WEBTRANSPORT_PORT = 4443;
/** Where a listener listens when ListenOptions names no host. */
export const DEFAULT_WEBTRANSPORT_LISTEN_HOST = '127.0.0.1';
/** The URL path of smartcopy's WebTransport sessions. */
export const WEBTRANSPORT_PATH = '/smartcopy';
/** Flow-control window of a session (all its streams) and of one stream, each direction. */
export const WEBTRANSPORT_SESSION_WINDOW = 64 * 1024 * 1024;
export const WEBTRANSPORT_STREAM_WINDOW = 4 * 1024 * 1024;
/** HTTP/2 receive windows under a session (see "Flow control" above for why not more). */
export const WEBTRANSPORT_HTTP2_WINDOW = 2 * 1024 * 1024;
/** Streams one session may carry over its lifetime (see "Package limits" above). */
export const WEBTRANSPORT_MAX_STREAMS_PER_SESSION = 10_000;

export interface WebTransportTransportInit {
  // -- listen() --
  /** server certificate chain (PEM); required to listen */
  certPem?: string;
  /** server private key (PEM); required to listen */
  keyPem?: string;

  // -- dial() --
  /** fingerprints of the server certificates to accept (pinning; see the notes above) */
  serverCertificateHashes?: readonly string[];
  /** check the server's certificate before the session starts; throw to refuse it */
  verifyPeer?: WebTransportVerifyPeer;
  connectTimeoutMs?: number;

  // -- both ends --
  /** URL path of the session (default /smartcopy); both ends must agree */
  path?: string;
  /** use HTTP/3 when the package's native part is installed (default true) */
  http3?: boolean;
  /** flow-control window per session / per stream, each direction (default 64 / 4 MiB) */
  sessionWindow?: number;
  streamWindow?: number;
  /** HTTP/2 flow-control window (connection and streams) each end grants (default 2 MiB; see above) */
  http2Window?: number;
  /** streams one session may carry (default 10,000) */
  maxStreamsPerSession?: number;
  highWaterMark?: number;
  maxBuffered?: number;
}

/** "host:port", "host" (port 4443), "[v6]:port". */
export function parseWebTransportAddress(address: string): HostPort {
  return parseHostPort(address, DEFAULT_WEBTRANSPORT_PORT);
}

function positive(name: string, v: number | undefined, dflt: number, min: number, max = 2 ** 30): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min || v > max) throw new SmartcopyError('SC_ERR_USAGE', `invalid WebTransport option ${name}: ${String(v)}`);
  return v;
}

/**
 * The package's read control of a stream. An incoming stream is the package's stream object
 * itself; an outgoing one is a plain {readable, writable} pair whose object the session lists.
 */
function readControl(bidi: WtBidiStream, objects: Iterable<WtStreamObject> | undefined): WtReadControl {
  let control = (bidi as WtStreamObject).objint;
  if (control === undefined && objects !== undefined) {
    for (const o of objects) {
      if (o.readable === bidi.readable) {
        control = o.objint;
        break;
      }
    }
  }
  if (typeof control?.stopReading !== 'function' || typeof control.startReading !== 'function') {
    throw new SmartcopyError(
      'SC_ERR_UNSUPPORTED',
      'the installed @fails-components/webtransport has no per-stream stopReading()/startReading(), which this transport needs for backpressure; install version 1.6',
    );
  }
  return control;
}

/**
 * The package sets no HTTP/2 windows, so Node keeps the protocol's 64 KiB: widen this end's
 * receive windows — the connection's and its streams', the session's CONNECT stream included —
 * as soon as the session exists (see "Flow control" above for the size). Over HTTP/3 there is
 * no HTTP/2 session, and QUIC's windows are the package's.
 */
function widenHttp2Windows(native: WtNativeSession | undefined, window: number): H2Session | undefined {
  const h2 = native?.stream?.session;
  if (h2 === undefined || h2.destroyed || h2.closed) return undefined;
  h2.setLocalWindowSize(window);
  h2.settings({ initialWindowSize: window });
  return h2;
}

/** Abort both halves of a stream we will not serve. */
function refuse(bidi: WtBidiStream, code: number): void {
  bidi.writable.abort({ code }).catch(() => undefined);
  bidi.readable.cancel({ code }).catch(() => undefined);
}

interface StreamInit {
  highWaterMark: number | undefined;
  maxBuffered: number | undefined;
}

export class WebTransportConnection extends AbstractConnection {
  readonly features = WEBTRANSPORT_FEATURES;
  /** the HTTP version the session runs on */
  readonly http: 'h2' | 'h3';
  readonly #wt: WtClientSession;
  readonly #h2: H2Session | undefined;
  readonly #streamInit: StreamInit;
  readonly #maxStreams: number;
  /** streams whose FIN may not have been handed to the session yet */
  readonly #unflushed = new Set<WebTransportStream>();
  #opened = 0;

  constructor(remoteAddress: string, wt: WtClientSession, streamInit: StreamInit, maxStreams: number, window: number) {
    super(remoteAddress);
    this.#wt = wt;
    this.#h2 = widenHttp2Windows(wt.sessionint?.objint, window);
    this.#streamInit = streamInit;
    this.#maxStreams = maxStreams;
    this.http = wt.reliability === 'supports-unreliable' ? 'h3' : 'h2';
    const gone = (info: unknown, failed: boolean): void => {
      if (this.state === 'closed') return;
      const { closeCode, reason } = (failed ? {} : (info ?? {})) as Partial<WtCloseInfo>;
      const why = closeCode ? ` (code ${closeCode}${reason ? `: ${reason}` : ''})` : '';
      this.abort(new ConnectionClosedError(`the WebTransport session with ${remoteAddress} closed${why}`, failed ? { cause: info } : {}));
    };
    wt.closed.then(
      (info) => gone(info, false),
      (err) => gone(err, true),
    );
  }

  /**
   * The HTTP/2 connection's flow-control windows now: bytes the server may still send us
   * (`receive`) and we may still send it (`send`) before a WINDOW_UPDATE; undefined over HTTP/3.
   */
  get http2Windows(): { receive: number; send: number } | undefined {
    const state = this.#h2?.state;
    if (state?.localWindowSize === undefined || state.remoteWindowSize === undefined) return undefined;
    return { receive: state.localWindowSize, send: state.remoteWindowSize };
  }

  /** streams opened on this session so far (the session carries at most maxStreamsPerSession) */
  get streamsOpened(): number {
    return this.#opened;
  }

  protected override async newStream(opts: { signal?: AbortSignal }): Promise<Stream> {
    if (this.#opened >= this.#maxStreams) {
      throw new ConnectionClosedError(
        `the WebTransport session with ${this.remoteAddress} has carried ${this.#maxStreams} streams, the most one session may: dial a new connection`,
      );
    }
    this.#opened++;
    let bidi: WtBidiStream;
    try {
      bidi = await this.#wt.createBidirectionalStream();
    } catch (err) {
      throw new ConnectionClosedError(`cannot open a WebTransport stream to ${this.remoteAddress}: ${(err as Error).message}`, { cause: err });
    }
    let control: WtReadControl;
    try {
      control = readControl(bidi, this.#wt.sessionint?.streamObjs);
    } catch (err) {
      refuse(bidi, ErrorCodes.SC_ERR_UNSUPPORTED.wire);
      throw err;
    }
    const stream = new WebTransportStream(bidi, control, this.remoteAddress, this.#streamInit);
    this.#unflushed.add(stream);
    void Promise.all([stream.closed, stream.flushed]).then(() => this.#unflushed.delete(stream));
    if (opts.signal?.aborted) {
      const err = abortReason(opts.signal, `open stream to ${this.remoteAddress}`);
      stream.abort(err);
      throw err;
    }
    return stream;
  }

  protected override onClose(err?: Error): void {
    const wt = this.#wt;
    if (err !== undefined) {
      const code = err instanceof SmartcopyError ? err.wireCode : ErrorCodes.SC_ERR_INTERNAL.wire;
      wt.close({ closeCode: code, reason: err.message.slice(0, 1000) });
      return;
    }
    // the session's CLOSE capsule must not overtake a FIN still queued in the package
    void Promise.all([...this.#unflushed].map((s) => s.flushed)).then(() => wt.close({ closeCode: 0, reason: '' }));
  }
}

/** What listen() returns: a Listener plus what it knows of its sessions. */
export interface WebTransportListener extends Listener {
  /** HTTP versions served */
  readonly http: readonly ('h2' | 'h3')[];
  /** sessions open now */
  readonly sessions: number;
}

export interface WebTransportTransport extends Transport {
  dial(address: string, opts?: DialOptions): Promise<WebTransportConnection>;
  listen(opts: ListenOptions, onStream: (stream: Stream) => void): Promise<WebTransportListener>;
}

export function webTransportTransport(init: WebTransportTransportInit = {}): WebTransportTransport {
  const path = init.path ?? WEBTRANSPORT_PATH;
  if (!/^\/[\w\-./~]*$/.test(path)) throw new SmartcopyError('SC_ERR_USAGE', `invalid WebTransport path ${JSON.stringify(path)}: expected /name`);
  const sessionWindow = positive('sessionWindow', init.sessionWindow, WEBTRANSPORT_SESSION_WINDOW, 65_536);
  const streamWindow = positive('streamWindow', init.streamWindow, WEBTRANSPORT_STREAM_WINDOW, 65_536);
  if (streamWindow > sessionWindow) {
    throw new SmartcopyError('SC_ERR_USAGE', `invalid WebTransport options: streamWindow ${streamWindow} is larger than sessionWindow ${sessionWindow}`);
  }
  const http2Window = positive('http2Window', init.http2Window, WEBTRANSPORT_HTTP2_WINDOW, 65_535, 2 ** 31 - 1);
  const maxStreams = positive('maxStreamsPerSession', init.maxStreamsPerSession, WEBTRANSPORT_MAX_STREAMS_PER_SESSION, 1);
  // invalid pins are a usage error now, not a refused server later
  const pins = init.serverCertificateHashes?.map(normalizeFingerprint);
  const streamInit: StreamInit = { highWaterMark: init.highWaterMark, maxBuffered: init.maxBuffered };
  const windows = {
    initialSessionFlowControlWindow: sessionWindow,
    sessionFlowControlWindowSizeLimit: sessionWindow,
    initialStreamFlowControlWindow: streamWindow,
    streamFlowControlWindowSizeLimit: streamWindow,
  };

  /** Why the session did not open: the package only says "Opening handshake failed". */
  async function explainFailure(target: HostPort, address: string, cause: unknown, sessionPins: readonly string[] | undefined, timeoutMs: number): Promise<SmartcopyError> {
    let peer: WebTransportPeerIdentity;
    try {
      peer = await fetchWebTransportCertificate(target, { timeoutMs });
    } catch (err) {
      return err instanceof SmartcopyError ? err : new SmartcopyError('SC_ERR_CONNECT', `cannot connect to ${address}: ${String(err)}`, { cause: err });
    }
    if (sessionPins !== undefined) {
      if (!sessionPins.includes(peer.fingerprint)) {
        return new SmartcopyError(
          'SC_ERR_AUTH',
          `WebTransport server ${address} presented certificate ${peer.fingerprint}, not the pinned ${sessionPins.join(' or ')} — refusing to connect`,
        );
      }
      const problem = pinnableProblem(peer);
      if (problem !== undefined) {
        return new SmartcopyError('SC_ERR_AUTH', `WebTransport server ${address} presented the pinned certificate ${peer.fingerprint}, but ${problem}`);
      }
    } else if (!peer.trusted) {
      return new SmartcopyError(
        'SC_ERR_AUTH',
        `WebTransport server ${address} presented a certificate that is not trusted (${peer.untrustedReason ?? 'unknown reason'}); if it is the agent's own, pin its fingerprint ${peer.fingerprint}`,
      );
    }
    return new SmartcopyError(
      'SC_ERR_CONNECT',
      `cannot open a WebTransport session at https://${address}${path}: the server completed TLS but refused the session — is it a smartcopy WebTransport agent?`,
      { cause, retryable: true },
    );
  }

  /** The pins for the session: configured ones, and with verifyPeer the certificate the hook accepted. */
  async function sessionPinsFor(target: HostPort, address: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<readonly string[] | undefined> {
    if (init.verifyPeer === undefined) return pins;
    const peer = await fetchWebTransportCertificate(target, { timeoutMs, signal });
    if (pins !== undefined && !pins.includes(peer.fingerprint)) {
      throw new SmartcopyError(
        'SC_ERR_AUTH',
        `WebTransport server ${address} presented certificate ${peer.fingerprint}, not the pinned ${pins.join(' or ')} — refusing to connect`,
      );
    }
    try {
      await init.verifyPeer(peer);
    } catch (err) {
      if (err instanceof SmartcopyError) throw err;
      throw new SmartcopyError('SC_ERR_AUTH', `WebTransport server ${address} refused: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    const problem = pinnableProblem(peer);
    // a CA-trusted certificate valid too long to pin is still checked against the CA in the session
    if (problem !== undefined && peer.trusted) return pins;
    if (problem !== undefined) {
      throw new SmartcopyError('SC_ERR_AUTH', `WebTransport server ${address} presented certificate ${peer.fingerprint}, but ${problem}`);
    }
    return [peer.fingerprint];
  }

  return {
    kind: 'webtransport',
    features: WEBTRANSPORT_FEATURES,

    async dial(address: string, opts: DialOptions = {}): Promise<WebTransportConnection> {
      const target = parseWebTransportAddress(address);
      const addr = formatHostPort(target.host, target.port);
      const signal = opts.signal;
      const timeoutMs = opts.timeoutMs ?? init.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
      const deadline = Date.now() + timeoutMs;
      if (signal?.aborted) throw abortReason(signal, `connect to ${addr}`);
      const { wt: lib, http3 } = await loadWebTransport();
      const sessionPins = await sessionPinsFor(target, addr, timeoutMs, signal);
      const left = Math.max(1, deadline - Date.now());
      const timeoutError = (): SmartcopyError =>
        new SmartcopyError('SC_ERR_TIMEOUT', `cannot connect to ${addr}: no WebTransport session within ${timeoutMs / 1000} s — check the address and firewalls`, {
          retryable: true,
        });
      const client = new lib.WebTransport(`https://${addr}${path}`, {
        ...(sessionPins !== undefined ? { serverCertificateHashes: certificateHashes(sessionPins) } : {}),
        forceReliable: !(http3 && init.http3 !== false),
        // the package's own timeouts are a backstop; ours fires first and says more
        quicConnectTimeout: left + 1000,
        webTransportConnectTimeout: left + 1000,
        ...windows,
      });
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      const stop = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(timeoutError()), left);
        onAbort = () => reject(abortReason(signal!, `connect to ${addr}`));
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      const ready = client.ready;
      // both reject when the session fails to open; the connection watches `closed` once open
      ready.catch(() => undefined);
      client.closed.catch(() => undefined);
      try {
        await Promise.race([ready, stop]);
      } catch (err) {
        if (err instanceof SmartcopyError) {
          // we gave up first: the package cannot cancel a pending session, so its HTTP/2
          // connection is destroyed directly; the error makes the package drop its own timer
          client.sessionint?.parentobj?.transportInt?.clientInt?.destroy(err);
          throw err;
        }
        if (Date.now() >= deadline) throw timeoutError();
        throw await explainFailure(target, addr, err, sessionPins, Math.max(1000, deadline - Date.now()));
      } finally {
        clearTimeout(timer);
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      }
      return new WebTransportConnection(addr, client, streamInit, maxStreams, http2Window);
    },

    async listen(opts: ListenOptions, onStream: (stream: Stream) => void): Promise<WebTransportListener> {
      if (init.certPem === undefined || init.keyPem === undefined) {
        throw new SmartcopyError('SC_ERR_USAGE', 'a WebTransport listener needs a certificate and key (certPem, keyPem; see generateWebTransportCertificate)');
      }
      try {
        new X509Certificate(init.certPem);
      } catch (err) {
        throw new SmartcopyError('SC_ERR_USAGE', `unreadable WebTransport certificate: ${(err as Error).message}`, { cause: err });
      }
      const { wt: lib, http3: http3Loaded } = await loadWebTransport();
      const http3 = http3Loaded && init.http3 !== false;
      const host = opts.host ?? DEFAULT_WEBTRANSPORT_LISTEN_HOST;
      const serverInit: WtServerInit = {
        host,
        port: opts.port ?? 0,
        // keys QUIC's stateless tokens (HTTP/3); the HTTP/2 server only insists it is set
        secret: randomBytes(32).toString('hex'),
        cert: init.certPem,
        privKey: init.keyPem,
        ...windows,
        initialBidirectionalStreams: maxStreams,
        initialUnidirectionalStreams: 1,
      };
      const server = http3 ? new lib.HttpServer({ ...serverInit, reliability: 'both' }) : new lib.Http2Server(serverInit);
      // registered before the server starts, so no session arrives before its reader
      const sessionReader = server.sessionStream(path).getReader();
      server.startServer();
      try {
        await server.ready;
      } catch (err) {
        server.stopServer();
        const e = err as NodeJS.ErrnoException;
        const why = e.code === 'EADDRINUSE' ? 'address already in use' : (e.code ?? e.message);
        throw new SmartcopyError('SC_ERR_CONNECT', `cannot listen on ${formatHostPort(host, opts.port ?? 0)}: ${why}`, { cause: err });
      }
      const bound = server.address();
      const port = bound?.port ?? opts.port ?? 0;
      const accepted = new Set<WebTransportStream>();
      const sessions = new Set<WtServerSession>();

      const serveSession = async (session: WtServerSession): Promise<void> => {
        sessions.add(session);
        widenHttp2Windows(session.objint, http2Window);
        const forget = (): void => void sessions.delete(session);
        session.closed.then(forget, forget);
        const peer = session.peerAddress ?? 'unknown peer';
        const incoming = session.incomingBidirectionalStreams.getReader();
        for (;;) {
          // the package closes (never errors) this queue when the session ends
          const { value: bidi, done } = await incoming.read();
          if (done) return;
          let stream: WebTransportStream;
          try {
            stream = new WebTransportStream(bidi, readControl(bidi, session.streamObjs), peer, streamInit);
          } catch (err) {
            refuse(bidi, ErrorCodes.SC_ERR_UNSUPPORTED.wire);
            session.close({ closeCode: ErrorCodes.SC_ERR_UNSUPPORTED.wire, reason: (err as Error).message });
            return;
          }
          accepted.add(stream);
          void stream.closed.then(() => accepted.delete(stream));
          try {
            onStream(stream);
          } catch (err) {
            stream.abort(err instanceof Error ? err : undefined);
          }
        }
      };
      void (async () => {
        for (;;) {
          const { value: session, done } = await sessionReader.read();
          if (done) return;
          void serveSession(session);
        }
      })();

      let closing: Promise<void> | undefined;
      const listener: WebTransportListener = {
        address: formatHostPort(bound?.host ?? host, port),
        port,
        http: http3 ? ['h2', 'h3'] : ['h2'],
        get sessions() {
          return sessions.size;
        },
        close(closeOpts = {}) {
          if (closeOpts.abortStreams) {
            const err = new SmartcopyError('SC_ERR_ABORTED', `listener ${listener.address} closed`);
            for (const s of accepted) s.abort(err);
            for (const s of sessions) s.close({ closeCode: err.wireCode, reason: err.message });
          }
          closing ??= new Promise<void>((resolve) => {
            opts.signal?.removeEventListener('abort', onAbort);
            server.stopServer();
            resolve();
          });
          return closing;
        },
      };
      const onAbort = (): void => void listener.close();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.signal?.aborted) await listener.close();
      return listener;
    },
  };
}
