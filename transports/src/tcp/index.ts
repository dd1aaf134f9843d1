import net from 'node:net';
import { SmartcopyError } from '@smartcopy/protocol';
import { AbstractConnection } from '../abstract-connection.js';
import { CONNECT_TIMEOUT_MS } from '../types.js';
import type { DialOptions, Listener, ListenOptions, Stream, Transport, TransportFeatures } from '../types.js';
import { connectSocket, formatHostPort, parseHostPort } from './connect.js';
import type { HostPort } from './connect.js';
import { TcpStream } from './tcp-stream.js';

export { DEFAULT_TCP_PORT, formatHostPort, parseHostPort } from './connect.js';
export { TcpStream } from './tcp-stream.js';

export const TCP_FEATURES: TransportFeatures = Object.freeze({ sameHost: false, multiplexed: false, encrypted: false });

/** Where an agent listens when ListenOptions names no host. */
export const DEFAULT_TCP_LISTEN_HOST = '127.0.0.1';

export interface TcpTransportInit {
  connectTimeoutMs?: number;
  highWaterMark?: number;
  maxBuffered?: number;
  /** custom DNS lookup for net.connect */
  lookup?: net.LookupFunction;
}

/**
 * A TCP "connection" is a peer address: every stream is its own socket. dial() connects the
 * first socket right away, so an unreachable agent is reported by dial() and the first stream
 * costs no extra round trip.
 */
class TcpConnection extends AbstractConnection {
  readonly features = TCP_FEATURES;
  readonly #target: HostPort;
  readonly #init: TcpTransportInit;
  readonly #timeoutMs: number;
  #spare: TcpStream | undefined;

  constructor(target: HostPort, first: net.Socket, init: TcpTransportInit, timeoutMs: number) {
    super(formatHostPort(target.host, target.port));
    this.#target = target;
    this.#init = init;
    this.#timeoutMs = timeoutMs;
    this.#spare = new TcpStream(first, this.remoteAddress, init);
  }

  protected override async newStream(opts: { signal?: AbortSignal }): Promise<Stream> {
    const spare = this.#spare;
    this.#spare = undefined;
    // bytes the agent sent first (a greeting, an auth challenge) wait in the stream for its reader
    if (spare !== undefined && spare.state === 'open') return spare;
    // the agent closed the idle socket meanwhile (or it broke): open a fresh one
    spare?.abort();
    const socket = await connectSocket(this.#target, {
      timeoutMs: this.#timeoutMs,
      signal: opts.signal,
      lookup: this.#init.lookup,
    });
    return new TcpStream(socket, this.remoteAddress, this.#init);
  }

  protected override onClose(err?: Error): void {
    const spare = this.#spare;
    this.#spare = undefined;
    if (spare === undefined) return;
    if (err) spare.abort(err);
    else void spare.close();
  }
}

export function tcpTransport(init: TcpTransportInit = {}): Transport {
  const streamInit = { highWaterMark: init.highWaterMark, maxBuffered: init.maxBuffered };
  return {
    kind: 'tcp',
    features: TCP_FEATURES,

    async dial(address: string, opts: DialOptions = {}) {
      const target = parseHostPort(address);
      const timeoutMs = opts.timeoutMs ?? init.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
      const socket = await connectSocket(target, { timeoutMs, signal: opts.signal, lookup: init.lookup });
      return new TcpConnection(target, socket, init, timeoutMs);
    },

    async listen(opts: ListenOptions, onStream: (stream: Stream) => void): Promise<Listener> {
      const host = opts.host ?? DEFAULT_TCP_LISTEN_HOST;
      const accepted = new Set<Stream>();
      const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
        const stream = new TcpStream(socket, formatHostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0), streamInit);
        accepted.add(stream);
        void stream.closed.then(() => accepted.delete(stream));
        try {
          onStream(stream);
        } catch (err) {
          stream.abort(err instanceof Error ? err : undefined);
        }
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err: NodeJS.ErrnoException) => {
          const why = err.code === 'EADDRINUSE' ? 'address already in use' : err.code ?? err.message;
          const where = formatHostPort(host, opts.port ?? 0);
          reject(new SmartcopyError('SC_ERR_CONNECT', `cannot listen on ${where}: ${why}`, { cause: err }));
        });
        server.listen({ host, port: opts.port ?? 0 }, () => resolve());
      });
      // accept() failures (EMFILE…) are per connection; the listener keeps serving
      server.on('error', () => undefined);
      const { address, port } = server.address() as net.AddressInfo;
      let closing: Promise<void> | undefined;
      const listener: Listener = {
        address: formatHostPort(address, port),
        port,
        close(closeOpts = {}) {
          if (closeOpts.abortStreams) {
            const err = new SmartcopyError('SC_ERR_ABORTED', `listener ${listener.address} closed`);
            for (const s of accepted) s.abort(err);
          }
          closing ??= new Promise<void>((resolve) => {
            opts.signal?.removeEventListener('abort', onAbort);
            // server.close() stops accepting at once; its callback would also wait for every
            // accepted socket to end, which is the streams' business, not the listener's
            server.close();
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
