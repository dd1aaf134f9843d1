/**
 * # QUIC transport
 *
 * One QUIC connection per peer, one QUIC bidirectional stream per `Stream`, TLS 1.3 always.
 * It runs on the raw quiche binding of `@matrixai/quic` (`@matrixai/quic/native`) with our own
 * driver: that library's QUICServer/QUICClient move about 1 MiB/s, because of the JavaScript
 * work they do per datagram.
 *
 * ## Driver
 * - One `dgram` socket per endpoint, 4 MiB send/receive buffers (capped by the kernel's
 *   `net.core.wmem_max`/`rmem_max`; raise those on busy hosts). The client socket is
 *   `connect()`ed: it hears only its server and gets ECONNREFUSED when nothing listens.
 * - Every datagram that arrives is fed to quiche at once; one flush per event-loop turn
 *   (setImmediate) then reads the streams, refills them, and drains `conn.send()` into a ring
 *   of reused buffers (Node may send a datagram on the next tick, so one reused buffer would
 *   corrupt data). See endpoint.ts.
 * - Timers come from `conn.timeout()` / `conn.onTimeout()`; quiche does loss recovery and
 *   congestion control (`congestionControl`: CUBIC by default, Reno or BBR). quiche's send
 *   timestamps are opaque to JavaScript, so there is no pacing: each flush sends what the
 *   congestion window allows, up to 512 datagrams or 1 MiB, then yields to read ACKs.
 * - `streamSend` accepts about one congestion window at a time, so streams are refilled on every
 *   flush that processed ACKs. A write's callback runs once quiche took all its bytes.
 * - Backpressure: a paused reader (or one that has not been installed and is 1 MiB behind) leaves
 *   the bytes in quiche, which then stops extending the peer's flow-control window; the peer's
 *   writes stall. Windows: 16 MiB per stream, 64 MiB per connection (quiche auto-tunes up to
 *   them).
 * - Stream opening: QUIC announces a stream only with its first byte, so the opener sends one
 *   marker byte (0x53) that the listener strips; `openStream()` is visible to the listener at
 *   once. Aborting a stream resets both directions with the SmartcopyError's wire code, which
 *   the peer reports by name (`QUIC stream 4 was reset by host:port (SC_ERR_IO)`).
 *
 * ## Server
 * Connection ids the server issues are 20 bytes; short-header packets are routed on them
 * (comparing with the last connection's id first). A new client gets a Retry first: its token
 * (HMAC-SHA256 with a per-listener key over the client's address and port, the new connection
 * id and the original one, valid `retryTokenLifetimeMs`, default 10 s) must come back before
 * the server keeps any state, so spoofed source addresses cost one small packet. `retry: false`
 * saves that round trip on trusted networks.
 *
 * ## Identity
 * The server needs `certPem`/`keyPem`. `loadOrCreateCertificate(dir = ~/.smartcopy)` makes a
 * self-signed ECDSA P-256 pair once (`quic-cert.pem`, `quic-key.pem`, mode 0600, directory 0700)
 * and returns its fingerprint. Fingerprints are `SHA256:` + unpadded base64 of the SHA-256 of
 * the certificate's DER (OpenSSH's format); `normalizeFingerprint` also accepts 64 hex digits
 * (OpenSSL's output, colons allowed).
 *
 * A client must say how it checks the server — dial() refuses to run otherwise:
 * - `verifyPeer(peer)`: called after the handshake with the server's leaf certificate (DER,
 *   PEM) and fingerprint; throwing refuses the server. `pinFingerprint(fp)` builds one for
 *   `--quic-fingerprint`; trust-on-first-use belongs in a hook too. In this mode quiche's own
 *   verification is switched to "ask for the certificate but accept any", and the hook is the
 *   check: a self-signed certificate has no CA to verify against.
 * - `ca` (PEM bundle, or `'system'` for Node's bundled roots): BoringSSL verifies the chain,
 *   and the host name when dialing a name; when dialing an IP address the transport checks the
 *   certificate's IP SAN itself. `serverName` overrides the name sent and checked. With both
 *   `ca` and `verifyPeer`, both must pass.
 * A refused certificate fails dial() with SC_ERR_AUTH (and closes the connection with TLS alert
 * bad_certificate).
 *
 * ## Datagram size (`maxPayload`, `--quic-payload`)
 * The UDP payload per packet; the smaller of both ends' settings is used in both directions,
 * so both ends must raise it. quiche has no path-MTU discovery here, so the setting must fit
 * the path: an oversize datagram is dropped (or fragmented by IP) and the connection stalls.
 * The cost per datagram is nearly fixed — about 12 CPU-µs per end at 1452 bytes, half of it
 * Node's one syscall per datagram and its per-message work, the rest quiche and its binding —
 * so throughput scales with the size (test/bench/quic-raw.mjs, one stream, loopback, client and
 * listener in separate processes on this 2-core machine when it was otherwise idle):
 * - 1350 (default): fits every ordinary path (a 1500-byte MTU with tunnel headers to spare).
 * - 1452: the most a plain 1500-byte Ethernet MTU carries over IPv6. ≈ 100–120 MiB/s either
 *   way, 8–10 CPU seconds per GiB at each end (TCP: ≈ 0.5). 1350 costs ≈ 8% more per byte.
 * - 8192 / 16383 (the maximum: quiche caps packets there): only for jumbo-frame networks
 *   (MTU ≥ 9000 for 8 KiB) or loopback. ≈ 500–650 MiB/s at 16383, ≈ 1.5–2 CPU s/GiB per end.
 * The receiving end's cost includes V8's garbage collection of the per-datagram buffers Node
 * allocates, which grows with the size of the process's heap.
 *
 * ## Closing and failures
 * `Connection.close()` closes every stream gracefully, then sends CONNECTION_CLOSE (code 0).
 * `abort(err)` sends CONNECTION_CLOSE with the error's wire code. A peer silent for
 * `idleTimeoutMs` (default 30 s) is dead: every stream fails with SC_ERR_TIMEOUT. The client
 * PINGs every `keepAliveMs` (default a third of it) so an idle but healthy connection lives;
 * a dead peer still times out because nothing answers. ECONNREFUSED on the client socket
 * (nothing listens on the server's port) fails the dial with SC_ERR_CONNECT, or an open
 * connection with SC_ERR_CONNECTION_CLOSED, at once. `listener.close()` stops accepting;
 * connections already open keep the socket until they end; `{ abortStreams: true }` aborts them.
 *
 * Bundlers must keep `@matrixai/quic` external (its loader finds the native binary relative to
 * its own files); it is imported only when QUIC is first used.
 */
import tls from 'node:tls';
import { SmartcopyError } from '@smartcopy/protocol';
import { CONNECT_TIMEOUT_MS } from '../types.js';
import type { DialOptions, ListenOptions, Stream, Transport } from '../types.js';
import type { NativeConfig } from './binding.js';
import { loadQuiche } from './binding.js';
import type { VerifyPeer } from './cert.js';
import { dialQuic, QUIC_FEATURES } from './client.js';
import type { QuicConnection } from './client.js';
import {
  checkPayload,
  clientConfig,
  QUIC_CONNECTION_WINDOW,
  QUIC_IDLE_TIMEOUT_MS,
  QUIC_MAX_CONNECTIONS,
  QUIC_MAX_STREAMS,
  QUIC_RETRY_TOKEN_LIFETIME_MS,
  QUIC_STREAM_WINDOW,
  serverConfig,
} from './config.js';
import type { QuicCongestionControl, QuicConfigOptions } from './config.js';
import { listenQuic } from './server.js';
import type { QuicListener } from './server.js';

export {
  CERT_FILE,
  certificateFingerprint,
  DEFAULT_CERT_DIR,
  KEY_FILE,
  loadOrCreateCertificate,
  normalizeFingerprint,
  pinFingerprint,
} from './cert.js';
export type { QuicCertificate, QuicPeerIdentity, VerifyPeer } from './cert.js';
export { parseQuicAddress, QUIC_FEATURES, QuicConnection } from './client.js';
export {
  DEFAULT_QUIC_LISTEN_HOST,
  DEFAULT_QUIC_PORT,
  QUIC_ALPN,
  QUIC_DEFAULT_PAYLOAD,
  QUIC_IDLE_TIMEOUT_MS,
  QUIC_MAX_PAYLOAD,
  QUIC_MIN_PAYLOAD,
} from './config.js';
export type { QuicCongestionControl } from './config.js';
export type { QuicConnectionStats } from './driver.js';
export { QuicStream } from './quic-stream.js';
export type { QuicListener, QuicListenerStats } from './server.js';

export interface QuicTransportInit {
  // -- listen() --
  /** server certificate chain (PEM); required to listen */
  certPem?: string | Buffer;
  /** server private key (PEM); required to listen */
  keyPem?: string | Buffer;
  /** validate client addresses with a Retry round trip (default true) */
  retry?: boolean;
  retryTokenLifetimeMs?: number;
  /** connections one listener keeps at once (default 1024) */
  maxConnections?: number;

  // -- dial(): at least one of verifyPeer and ca --
  /** check the server's certificate after the handshake; throw to refuse it */
  verifyPeer?: VerifyPeer;
  /** CA certificates (PEM) that must have issued the server's certificate; 'system': Node's roots */
  ca?: string | Buffer | 'system';
  /** name sent as SNI and checked against the certificate (default: the host dialed, if a name) */
  serverName?: string;
  connectTimeoutMs?: number;
  /** PING period while idle (default idleTimeoutMs / 3; 0 disables) */
  keepAliveMs?: number;
  /** name resolution (default dns.lookup) */
  lookup?: (host: string) => Promise<{ address: string; family: number }>;

  // -- both ends --
  /** UDP payload bytes per packet, 1200..16383 (default 1350); see the notes above */
  maxPayload?: number;
  /** a peer silent this long is dead (default 30 s) */
  idleTimeoutMs?: number;
  /** congestion controller of what this end sends (default 'cubic') */
  congestionControl?: QuicCongestionControl;
  /** concurrent streams the peer may open (default 1024) */
  maxStreams?: number;
  /** flow-control window per stream / per connection (default 16 / 64 MiB) */
  streamWindow?: number;
  connectionWindow?: number;
  highWaterMark?: number;
  maxBuffered?: number;
}

export interface QuicTransport extends Transport {
  dial(address: string, opts?: DialOptions): Promise<QuicConnection>;
  listen(opts: ListenOptions, onStream: (stream: Stream) => void): Promise<QuicListener>;
}

function positive(name: string, v: number | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min) throw new SmartcopyError('SC_ERR_USAGE', `invalid QUIC option ${name}: ${String(v)}`);
  return v;
}

export function quicTransport(init: QuicTransportInit = {}): QuicTransport {
  const maxPayload = checkPayload(init.maxPayload);
  const idleTimeoutMs = positive('idleTimeoutMs', init.idleTimeoutMs, QUIC_IDLE_TIMEOUT_MS);
  const keepAliveMs = positive('keepAliveMs', init.keepAliveMs, Math.floor(idleTimeoutMs / 3), 0);
  const congestionControl = init.congestionControl ?? 'cubic';
  if (!['cubic', 'reno', 'bbr'].includes(congestionControl)) {
    throw new SmartcopyError('SC_ERR_USAGE', `invalid QUIC congestion control ${JSON.stringify(congestionControl)}: expected cubic, reno or bbr`);
  }
  const options: QuicConfigOptions = {
    maxPayload,
    congestionControl,
    idleTimeoutMs,
    maxStreams: positive('maxStreams', init.maxStreams, QUIC_MAX_STREAMS),
    streamWindow: positive('streamWindow', init.streamWindow, QUIC_STREAM_WINDOW, 65_536),
    connectionWindow: positive('connectionWindow', init.connectionWindow, QUIC_CONNECTION_WINDOW, 65_536),
  };
  const streamInit = { highWaterMark: init.highWaterMark, maxBuffered: init.maxBuffered };
  const ca = init.ca === 'system' ? tls.rootCertificates.join('\n') : init.ca === undefined ? undefined : init.ca.toString();
  let clientCfg: NativeConfig | undefined;

  return {
    kind: 'quic',
    features: QUIC_FEATURES,

    async dial(address: string, opts: DialOptions = {}): Promise<QuicConnection> {
      if (init.verifyPeer === undefined && ca === undefined) {
        throw new SmartcopyError(
          'SC_ERR_USAGE',
          `cannot dial ${address} over QUIC without a way to check the server: give a certificate fingerprint (verifyPeer / pinFingerprint) or a CA (ca)`,
        );
      }
      const q = await loadQuiche();
      clientCfg ??= clientConfig(q, ca, options);
      return dialQuic({
        q,
        config: clientCfg,
        address,
        maxPayload,
        timeoutMs: opts.timeoutMs ?? init.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
        signal: opts.signal,
        idleTimeoutMs,
        keepAliveMs,
        caMode: ca !== undefined,
        serverName: init.serverName,
        verifyPeer: init.verifyPeer,
        lookup: init.lookup,
        streamInit,
      });
    },

    async listen(opts: ListenOptions, onStream: (stream: Stream) => void): Promise<QuicListener> {
      if (init.certPem === undefined || init.keyPem === undefined) {
        throw new SmartcopyError('SC_ERR_USAGE', 'a QUIC listener needs a certificate and key (certPem, keyPem; see loadOrCreateCertificate)');
      }
      const q = await loadQuiche();
      return listenQuic(
        {
          q,
          config: serverConfig(q, init.certPem, init.keyPem, options),
          maxPayload,
          retry: init.retry ?? true,
          retryTokenLifetimeMs: positive('retryTokenLifetimeMs', init.retryTokenLifetimeMs, QUIC_RETRY_TOKEN_LIFETIME_MS),
          maxConnections: positive('maxConnections', init.maxConnections, QUIC_MAX_CONNECTIONS),
          idleTimeoutMs,
          streamInit,
        },
        opts,
        onStream,
      );
    },
  };
}
