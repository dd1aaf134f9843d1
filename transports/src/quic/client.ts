import { randomBytes, X509Certificate } from 'node:crypto';
import dgram from 'node:dgram';
import dns from 'node:dns/promises';
import net from 'node:net';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { AbstractConnection, abortReason } from '../abstract-connection.js';
import type { AbstractStreamInit } from '../abstract-stream.js';
import { connectError, formatHostPort, parseHostPort } from '../tcp/connect.js';
import type { HostPort } from '../tcp/connect.js';
import type { Stream, TransportFeatures } from '../types.js';
import type { NativeConfig, Quiche } from './binding.js';
import { certificateFingerprint } from './cert.js';
import type { VerifyPeer } from './cert.js';
import { DEFAULT_QUIC_PORT, QUIC_CID_LEN } from './config.js';
import { BAD_CERTIFICATE, QuicDriver } from './driver.js';
import type { QuicConnectionStats } from './driver.js';
import { QUIC_SOCKET_BUFFER, UdpEndpoint } from './endpoint.js';

export const QUIC_FEATURES: TransportFeatures = Object.freeze({ sameHost: false, multiplexed: true, encrypted: true });

/** "host:port", "host" (port 4433), "[v6]:port". */
export function parseQuicAddress(address: string): HostPort {
  try {
    return parseHostPort(address, DEFAULT_QUIC_PORT);
  } catch (err) {
    throw new SmartcopyError('SC_ERR_USAGE', `invalid QUIC address ${JSON.stringify(address)}: expected host:port`, { cause: err });
  }
}

/** A client connection: one UDP socket, one QUIC connection, streams on it. */
export class QuicConnection extends AbstractConnection {
  readonly features = QUIC_FEATURES;
  /** the server's certificate fingerprint, as checked at dial time */
  readonly peerFingerprint: string;
  readonly #driver: QuicDriver;
  #closing: Promise<void> | undefined;

  constructor(driver: QuicDriver, remoteAddress: string, peerFingerprint: string) {
    super(remoteAddress);
    this.#driver = driver;
    this.peerFingerprint = peerFingerprint;
    driver.events.onClosed = (err) => {
      void driver.endpoint.close();
      // the peer or the network ended it: fail what is still open
      if (err !== undefined) this.abort(err);
    };
  }

  stats(): QuicConnectionStats {
    return this.#driver.stats();
  }

  protected override newStream(opts: { signal?: AbortSignal }): Promise<Stream> {
    return this.#driver.openStream(opts.signal);
  }

  /**
   * Closes every stream gracefully, then the connection; resolves once the streams' last bytes
   * reached the server (or QUIC_CLOSE_LINGER_MS passed) and CONNECTION_CLOSE went out.
   */
  override close(): Promise<void> {
    this.#closing ??= super.close().then(() => this.#driver.done);
    return this.#closing;
  }

  protected override onClose(err?: Error): void {
    if (err === undefined) void this.#driver.closeGracefully();
    else this.#driver.close(err);
  }
}

export interface DialInit {
  q: Quiche;
  config: NativeConfig;
  address: string;
  maxPayload: number;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  idleTimeoutMs: number;
  keepAliveMs: number;
  caMode: boolean;
  serverName: string | undefined;
  verifyPeer: VerifyPeer | undefined;
  lookup: ((host: string) => Promise<{ address: string; family: number }>) | undefined;
  streamInit: Omit<AbstractStreamInit, 'id'>;
}

async function resolve(target: HostPort, address: string, init: DialInit): Promise<{ ip: string; family: 4 | 6 }> {
  const family = net.isIP(target.host);
  if (family !== 0) return { ip: target.host, family: family as 4 | 6 };
  try {
    if (init.lookup !== undefined) {
      const r = await init.lookup(target.host);
      return { ip: r.address, family: r.family === 6 ? 6 : 4 };
    }
    // IPv4 first: agents mostly listen on IPv4, and over UDP a wrong guess costs a timeout
    const all = await dns.lookup(target.host, { all: true });
    const r = all.find((a) => a.family === 4) ?? all[0];
    if (r === undefined) throw Object.assign(new Error('no address'), { code: 'ENOTFOUND' });
    return { ip: r.address, family: r.family === 6 ? 6 : 4 };
  } catch (err) {
    throw connectError(address, err as NodeJS.ErrnoException);
  }
}

function openSocket(ip: string, family: 4 | 6, port: number): Promise<dgram.Socket> {
  return new Promise((resolveSocket, reject) => {
    const socket = dgram.createSocket({
      type: family === 6 ? 'udp6' : 'udp4',
      recvBufferSize: QUIC_SOCKET_BUFFER,
      sendBufferSize: QUIC_SOCKET_BUFFER,
    });
    const onError = (err: Error): void => {
      socket.close();
      reject(err);
    };
    socket.once('error', onError);
    // connect() binds to an ephemeral port first; a connected socket only hears the server,
    // and learns of ICMP "port unreachable" as ECONNREFUSED
    socket.connect(port, ip, () => {
      socket.off('error', onError);
      resolveSocket(socket);
    });
  });
}

/** Rejects when the dial's time is up or its signal fires; clear() disarms it. */
function dialLimit(init: DialInit, port: number): { expired: Promise<never>; clear(): void } {
  const { address, signal } = init;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new SmartcopyError(
          'SC_ERR_TIMEOUT',
          `cannot connect to ${address}: no QUIC answer within ${init.timeoutMs / 1000} s — is the QUIC agent running there, and may UDP port ${port} pass the firewalls?`,
          { retryable: true },
        ),
      );
    }, init.timeoutMs);
    onAbort = () => reject(abortReason(signal!, `connect to ${address}`));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  // observed by the races below; this only keeps an expiry between them from going unhandled
  expired.catch(() => undefined);
  return {
    expired,
    clear() {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    },
  };
}

/**
 * Resolve, handshake, check the server's certificate, then hand over the connection. Any
 * failure closes the socket and rejects with one SmartcopyError: SC_ERR_CONNECT (refused,
 * unreachable, TLS refused by the server), SC_ERR_AUTH (certificate refused), SC_ERR_TIMEOUT
 * (the whole dial, name lookup and certificate hook included, took longer than timeoutMs), or
 * SC_ERR_ABORTED (the signal).
 */
export async function dialQuic(init: DialInit): Promise<QuicConnection> {
  const { address, signal } = init;
  if (signal?.aborted) throw abortReason(signal, `connect to ${address}`);
  const target = parseQuicAddress(address);
  const limit = dialLimit(init, target.port);
  try {
    const { ip, family } = await Promise.race([resolve(target, address, init), limit.expired]);
    let socket: dgram.Socket;
    try {
      socket = await openSocket(ip, family, target.port);
    } catch (err) {
      throw connectError(address, err as NodeJS.ErrnoException);
    }
    const local = socket.address();
    const endpoint = new UdpEndpoint(socket, init.maxPayload, true);
    const scid = randomBytes(QUIC_CID_LEN);
    const serverName = init.serverName ?? (net.isIP(target.host) === 0 ? target.host : null);
    const peer = { host: ip, port: target.port };
    let conn;
    try {
      conn = init.q.Connection.connect(serverName, scid, { host: local.address, port: local.port }, peer, init.config);
    } catch (err) {
      await endpoint.close();
      throw new SmartcopyError('SC_ERR_CONNECT', `cannot connect to ${address}: ${(err as Error).message}`, { cause: err });
    }
    const driver = new QuicDriver({
      q: init.q,
      conn,
      endpoint,
      isServer: false,
      remoteAddress: formatHostPort(target.host, target.port),
      scid,
      local: { host: local.address, port: local.port },
      peer,
      idleTimeoutMs: init.idleTimeoutMs,
      keepAliveMs: init.keepAliveMs,
      streamInit: init.streamInit,
    });
    socket.on('message', (msg, rinfo) => driver.recv(msg, rinfo));
    const onHandshakeError = (err: NodeJS.ErrnoException): void => driver.fail(connectError(address, err));
    socket.on('error', onHandshakeError);
    let fingerprint: string;
    try {
      fingerprint = await Promise.race([handshake(driver, init, target, address), limit.expired]);
    } catch (err) {
      driver.close(err as Error);
      await endpoint.close();
      throw err;
    }
    socket.off('error', onHandshakeError);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ECONNREFUSED' ? 'ECONNREFUSED (nothing listens on that port any more)' : (err.code ?? err.message);
      driver.fail(new ConnectionClosedError(`QUIC connection to ${address} broke: ${why}`, { cause: err }));
    });
    return new QuicConnection(driver, driver.remoteAddress, fingerprint);
  } finally {
    limit.clear();
  }
}

/** Resolves with the server's fingerprint once the handshake is done and the server accepted. */
function handshake(driver: QuicDriver, init: DialInit, target: HostPort, address: string): Promise<string> {
  const done = new Promise<string>((resolveHs, rejectHs) => {
    driver.events.onClosed = (err) => {
      rejectHs(err ?? new SmartcopyError('SC_ERR_CONNECT', `cannot connect to ${address}: the QUIC handshake was closed`));
    };
    driver.events.onEstablished = () => {
      driver.events.onEstablished = undefined;
      verify(driver, init, target, address).then(resolveHs, (err: Error) => {
        driver.refuse(BAD_CERTIFICATE, err);
        rejectHs(err);
      });
    };
    driver.flush();
  });
  // the dial may have given up already (timeout, signal): a late failure is not news
  done.catch(() => undefined);
  return done;
}

/** The server's leaf certificate against the CA's name rules and the verifyPeer hook. */
async function verify(driver: QuicDriver, init: DialInit, target: HostPort, address: string): Promise<string> {
  const leaf = driver.conn.peerCertChain()?.[0];
  if (leaf === undefined) throw new SmartcopyError('SC_ERR_AUTH', `QUIC server ${address} sent no certificate`);
  const der = Buffer.from(leaf);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (err) {
    throw new SmartcopyError('SC_ERR_AUTH', `QUIC server ${address} sent an unreadable certificate`, { cause: err });
  }
  const fingerprint = certificateFingerprint(der);
  // BoringSSL checks a host name (sent as SNI); an IP address it does not, so check it here
  if (init.caMode && init.serverName === undefined && net.isIP(target.host) !== 0 && x509.checkIP(target.host) === undefined) {
    throw new SmartcopyError('SC_ERR_AUTH', `QUIC server ${address}: its certificate is not issued for ${target.host}`);
  }
  if (init.verifyPeer !== undefined) {
    try {
      await init.verifyPeer({ address, certDer: der, certPem: x509.toString(), fingerprint });
    } catch (err) {
      if (err instanceof SmartcopyError && err.code === 'SC_ERR_AUTH') throw err;
      const why = err instanceof Error ? err.message : String(err);
      throw new SmartcopyError('SC_ERR_AUTH', `QUIC server ${address} (${fingerprint}) refused: ${why}`, { cause: err });
    }
  }
  return fingerprint;
}
