import { SmartcopyError } from '@smartcopy/protocol';
import type { NativeConfig, Quiche } from './binding.js';

/** The port a QUIC agent listens on when an address names none. */
export const DEFAULT_QUIC_PORT = 4433;
/** Where a QUIC agent listens when ListenOptions names no host (as the TCP agent). */
export const DEFAULT_QUIC_LISTEN_HOST = '127.0.0.1';
/** ALPN protocol id: a client or server of anything else fails the TLS handshake. */
export const QUIC_ALPN = 'smartcopy/1';

/** UDP payload that fits a 1500-byte MTU with room for tunnels (IPv6 + UDP headers = 48). */
export const QUIC_DEFAULT_PAYLOAD = 1350;
/** QUIC's own floor: every path must carry 1200-byte datagrams. */
export const QUIC_MIN_PAYLOAD = 1200;
/** quiche in @matrixai/quic 2.0.9 never sends bigger packets once the handshake is done. */
export const QUIC_MAX_PAYLOAD = 16383;

/** A connection with no packet from the peer for this long is dead (its streams are aborted). */
export const QUIC_IDLE_TIMEOUT_MS = 30_000;
/** Time a Retry token stays valid; the client answers a Retry within one round trip. */
export const QUIC_RETRY_TOKEN_LIFETIME_MS = 10_000;
/** Accepted connections one listener keeps at once; Initial packets beyond it are dropped. */
export const QUIC_MAX_CONNECTIONS = 1024;
/** Concurrent bidirectional streams a peer may open (quiche raises it as streams complete). */
export const QUIC_MAX_STREAMS = 1024;

/**
 * Flow-control windows. quiche auto-tunes each window up to the max; the initial values let a
 * fresh stream fill a 1 Gbit/s × 100 ms path without waiting for window updates.
 */
export const QUIC_STREAM_WINDOW = 16 * 1024 * 1024;
export const QUIC_CONNECTION_WINDOW = 64 * 1024 * 1024;

/** Server connection ids are this long (quiche's maximum): short headers are routed on it. */
export const QUIC_CID_LEN = 20;

export type QuicCongestionControl = 'cubic' | 'reno' | 'bbr';

export interface QuicConfigOptions {
  maxPayload: number;
  congestionControl: QuicCongestionControl;
  idleTimeoutMs: number;
  maxStreams: number;
  streamWindow: number;
  connectionWindow: number;
}

/** The datagram size option, validated: an integer in [QUIC_MIN_PAYLOAD, QUIC_MAX_PAYLOAD]. */
export function checkPayload(maxPayload: number | undefined): number {
  const v = maxPayload ?? QUIC_DEFAULT_PAYLOAD;
  if (!Number.isInteger(v) || v < QUIC_MIN_PAYLOAD || v > QUIC_MAX_PAYLOAD) {
    throw new SmartcopyError(
      'SC_ERR_USAGE',
      `invalid QUIC payload size ${String(maxPayload)}: expected ${QUIC_MIN_PAYLOAD}..${QUIC_MAX_PAYLOAD} bytes`,
    );
  }
  return v;
}

function configError(err: unknown, what: string): SmartcopyError {
  const why = err instanceof Error ? err.message : String(err);
  return new SmartcopyError('SC_ERR_USAGE', `QUIC ${what}: ${why}`, { cause: err });
}

function applyCommon(c: NativeConfig, o: QuicConfigOptions): void {
  c.setApplicationProtos([QUIC_ALPN]);
  c.setMaxIdleTimeout(o.idleTimeoutMs);
  // Advertising our own payload size as the largest we accept makes the smaller of both ends'
  // settings apply in both directions: a client asking for 16 KiB datagrams from a server set
  // to 1350 gets 1350 both ways, never oversize packets the path may drop.
  c.setMaxRecvUdpPayloadSize(o.maxPayload);
  c.setMaxSendUdpPayloadSize(o.maxPayload);
  c.setInitialMaxData(o.connectionWindow);
  c.setInitialMaxStreamDataBidiLocal(o.streamWindow);
  c.setInitialMaxStreamDataBidiRemote(o.streamWindow);
  c.setInitialMaxStreamDataUni(0);
  c.setInitialMaxStreamsBidi(o.maxStreams);
  c.setInitialMaxStreamsUni(0);
  c.setMaxStreamWindow(o.streamWindow);
  c.setCcAlgorithmName(o.congestionControl);
  c.setMaxConnectionWindow(o.connectionWindow);
  // connection ids are fixed per connection: no migration, so routing stays a map lookup
  c.setDisableActiveMigration(true);
}

export function serverConfig(q: Quiche, certPem: string | Buffer, keyPem: string | Buffer, o: QuicConfigOptions): NativeConfig {
  let c: NativeConfig;
  try {
    c = q.Config.withBoringSslCtx(false, false, null, [Buffer.from(keyPem)], [Buffer.from(certPem)], null);
  } catch (err) {
    throw configError(err, 'server certificate or key rejected');
  }
  applyCommon(c, o);
  return c;
}

/**
 * With `caPem`, BoringSSL verifies the server's chain against those roots (and the host name,
 * when dialing a name). Without it, BoringSSL still asks for the certificate but accepts any
 * (verify_allow_fail); the transport then checks it itself, by fingerprint, after the handshake.
 */
export function clientConfig(q: Quiche, caPem: string | undefined, o: QuicConfigOptions): NativeConfig {
  let c: NativeConfig;
  try {
    c = q.Config.withBoringSslCtx(true, caPem === undefined, caPem === undefined ? null : Buffer.from(caPem), null, null, null);
  } catch (err) {
    throw configError(err, 'CA bundle rejected');
  }
  applyCommon(c, o);
  return c;
}
