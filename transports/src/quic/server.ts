import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { SmartcopyError } from '@smartcopy/protocol';
import type { AbstractStreamInit } from '../abstract-stream.js';
import { formatHostPort } from '../tcp/connect.js';
import type { Listener, ListenOptions, Stream } from '../types.js';
import type { NativeConfig, Quiche } from './binding.js';
import { DEFAULT_QUIC_LISTEN_HOST, QUIC_CID_LEN } from './config.js';
import { QuicDriver } from './driver.js';
import { QUIC_SOCKET_BUFFER, UdpEndpoint } from './endpoint.js';
import { RetryTokens } from './retry-token.js';

export interface QuicListenerStats {
  /** connections open now */
  connections: number;
  /** connections accepted since listen() */
  accepted: number;
  /** Retry packets sent (one per new client address when address validation is on) */
  retries: number;
  /** Initial packets dropped for a bad, expired or foreign Retry token */
  badTokens: number;
}

export interface QuicListener extends Listener {
  readonly stats: QuicListenerStats;
}

export interface ServeInit {
  q: Quiche;
  config: NativeConfig;
  maxPayload: number;
  retry: boolean;
  retryTokenLifetimeMs: number;
  maxConnections: number;
  idleTimeoutMs: number;
  streamInit: Omit<AbstractStreamInit, 'id'>;
}

/**
 * Addresses quiche hands us are IP literals. Node still "looks them up" through dns.lookup,
 * which answers on the next tick — one deferred callback per datagram; answering at once makes
 * the send synchronous.
 */
const literalLookup = ((address: string, family: number, cb: (err: null, address: string, family: number) => void): void =>
  cb(null, address, family)) as unknown as dgram.SocketOptions['lookup'];

function bindSocket(host: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({
      type: net.isIPv6(host) ? 'udp6' : 'udp4',
      recvBufferSize: QUIC_SOCKET_BUFFER,
      sendBufferSize: QUIC_SOCKET_BUFFER,
      lookup: literalLookup,
    });
    const onError = (err: NodeJS.ErrnoException): void => {
      socket.close();
      const why = err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : (err.code ?? err.message);
      reject(new SmartcopyError('SC_ERR_CONNECT', `cannot listen on ${formatHostPort(host, port)} (UDP): ${why}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.bind(port, host, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/**
 * Accept QUIC connections on one UDP socket and hand every stream a client opens to
 * `onStream`. Short-header packets are routed on the 20-byte connection id the server chose
 * (the last connection's id is compared first: bulk traffic is mostly one connection);
 * long-header packets are parsed by quiche. A new client is first sent a Retry whose token
 * proves, on its second Initial, that it owns its source address — so spoofed Initials cost
 * one small packet and no state.
 */
/** msg[1..21) equals cid (20 bytes): five word compares, cheaper than a Buffer.compare call */
function sameCid(msg: Buffer, cid: Buffer): boolean {
  return (
    msg.readUInt32LE(1) === cid.readUInt32LE(0) &&
    msg.readUInt32LE(5) === cid.readUInt32LE(4) &&
    msg.readUInt32LE(9) === cid.readUInt32LE(8) &&
    msg.readUInt32LE(13) === cid.readUInt32LE(12) &&
    msg.readUInt32LE(17) === cid.readUInt32LE(16)
  );
}

export async function listenQuic(init: ServeInit, opts: ListenOptions, onStream: (stream: Stream) => void): Promise<QuicListener> {
  const host = opts.host ?? DEFAULT_QUIC_LISTEN_HOST;
  const socket = await bindSocket(host, opts.port ?? 0);
  const bound = socket.address();
  const local = { host: bound.address, port: bound.port };
  const address = formatHostPort(bound.address, bound.port);
  const { q, config } = init;
  const endpoint = new UdpEndpoint(socket, init.maxPayload, false);
  const tokens = new RetryTokens(init.retryTokenLifetimeMs);
  const byCid = new Map<string, QuicDriver>();
  const drivers = new Set<QuicDriver>();
  const accepted = new Set<Stream>();
  const stats = { accepted: 0, retries: 0, badTokens: 0 };
  let last: QuicDriver | undefined;
  let accepting = true;

  const maybeCloseSocket = (): void => {
    if (!accepting && drivers.size === 0) void endpoint.close();
  };

  const sendRaw = (buf: Buffer, to: dgram.RemoteInfo): void => {
    // a fresh buffer each time: these are rare (Retry, version negotiation)
    socket.send(buf, to.port, to.address);
  };

  const newConnection = (msg: Buffer, rinfo: dgram.RemoteInfo, hdr: ReturnType<Quiche['Header']['fromSlice']>): void => {
    if (!accepting || drivers.size >= init.maxConnections) return;
    if (!q.versionIsSupported(hdr.version)) {
      const out = Buffer.allocUnsafe(q.MAX_DATAGRAM_SIZE);
      sendRaw(out.subarray(0, q.negotiateVersion(hdr.scid, hdr.dcid, out)), rinfo);
      return;
    }
    if (hdr.ty !== q.Type.Initial || msg.byteLength < q.MIN_CLIENT_INITIAL_LEN) return;
    let scid: Buffer;
    let odcid: Buffer | null = null;
    if (init.retry) {
      const token = hdr.token;
      if (token === undefined || token.byteLength === 0) {
        const newScid = randomBytes(QUIC_CID_LEN);
        const t = tokens.mint(rinfo.address, rinfo.port, hdr.dcid, newScid);
        const out = Buffer.allocUnsafe(q.MAX_DATAGRAM_SIZE);
        sendRaw(out.subarray(0, q.retry(hdr.scid, hdr.dcid, newScid, t, hdr.version, out)), rinfo);
        stats.retries++;
        return;
      }
      odcid = tokens.verify(token, rinfo.address, rinfo.port, hdr.dcid) ?? null;
      if (odcid === null) {
        stats.badTokens++;
        return;
      }
      scid = Buffer.from(hdr.dcid);
    } else scid = randomBytes(QUIC_CID_LEN);
    const peer = { host: rinfo.address, port: rinfo.port };
    let conn;
    try {
      conn = q.Connection.accept(scid, odcid, local, peer, config);
    } catch {
      return;
    }
    const driver = new QuicDriver({
      q,
      conn,
      endpoint,
      isServer: true,
      remoteAddress: formatHostPort(rinfo.address, rinfo.port),
      scid,
      local,
      peer,
      idleTimeoutMs: init.idleTimeoutMs,
      keepAliveMs: 0,
      streamInit: init.streamInit,
    });
    const keys = [scid.toString('hex')];
    // without Retry the client keeps addressing its own first id until our reply arrives
    if (!init.retry) keys.push(Buffer.from(hdr.dcid).toString('hex'));
    for (const k of keys) byCid.set(k, driver);
    drivers.add(driver);
    stats.accepted++;
    driver.events.onPeerStream = (s) => {
      accepted.add(s);
      void s.closed.then(() => accepted.delete(s));
      try {
        onStream(s);
      } catch (err) {
        s.abort(err instanceof Error ? err : undefined);
      }
    };
    driver.events.onClosed = () => {
      for (const k of keys) byCid.delete(k);
      drivers.delete(driver);
      if (last === driver) last = undefined;
      maybeCloseSocket();
    };
    last = driver;
    driver.recv(msg, rinfo);
  };

  socket.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => {
    if (msg.byteLength === 0) return;
    if ((msg[0]! & 0x80) === 0) {
      // short header: flags · destination connection id (ours, QUIC_CID_LEN bytes) · …
      if (msg.byteLength <= QUIC_CID_LEN) return;
      let d = last;
      if (d === undefined || !sameCid(msg, d.scid)) {
        d = byCid.get(msg.toString('hex', 1, 1 + QUIC_CID_LEN));
        if (d === undefined) return;
        last = d;
      }
      d.recv(msg, rinfo);
      return;
    }
    let hdr;
    try {
      hdr = q.Header.fromSlice(msg, QUIC_CID_LEN);
    } catch {
      return;
    }
    const d = byCid.get(Buffer.from(hdr.dcid).toString('hex'));
    if (d !== undefined) d.recv(msg, rinfo);
    else newConnection(msg, rinfo, hdr);
  });
  // per-datagram receive errors do not stop the listener
  socket.on('error', () => undefined);

  const listener: QuicListener = {
    address,
    port: bound.port,
    get stats(): QuicListenerStats {
      return { connections: drivers.size, ...stats };
    },
    close(closeOpts = {}) {
      accepting = false;
      opts.signal?.removeEventListener('abort', onAbort);
      if (closeOpts.abortStreams) {
        const err = new SmartcopyError('SC_ERR_ABORTED', `QUIC listener ${address} closed`);
        for (const s of accepted) s.abort(err);
        for (const d of [...drivers]) d.close(err);
      }
      // connections still open keep the socket until they end; the listener stops accepting now
      maybeCloseSocket();
      return drivers.size === 0 ? endpoint.close() : Promise.resolve();
    },
  };
  const onAbort = (): void => void listener.close();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) await listener.close();
  return listener;
}
