import net from 'node:net';
import { SmartcopyError } from '@smartcopy/protocol';
import { abortReason } from '../abstract-connection.js';

/** The port `smartcopy agent` listens on when an address names none. */
export const DEFAULT_TCP_PORT = 9878;

export interface HostPort {
  host: string;
  port: number;
}

/** "host:port", "host", "[v6]:port" or "[v6]". */
export function parseHostPort(address: string, defaultPort = DEFAULT_TCP_PORT): HostPort {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(address) ?? /^([^:]+)(?::(\d+))?$/.exec(address);
  const port = m?.[2] === undefined ? defaultPort : Number(m[2]);
  if (!m || !m[1] || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SmartcopyError('SC_ERR_USAGE', `invalid TCP address ${JSON.stringify(address)}: expected host:port`);
  }
  return { host: m[1], port };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused — is `smartcopy agent` running there?',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed (temporary DNS failure)',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  ECONNRESET: 'connection reset by peer',
  EADDRNOTAVAIL: 'address not available',
};

export function connectError(address: string, err: NodeJS.ErrnoException): SmartcopyError {
  const reason = (err.code && REASONS[err.code]) ?? err.message;
  const errno = err.code && REASONS[err.code] ? ` (${err.code})` : '';
  return new SmartcopyError('SC_ERR_CONNECT', `cannot connect to ${address}: ${reason}${errno}`, {
    cause: err,
    retryable: true,
  });
}

export interface ConnectOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** custom DNS lookup (tests use it to simulate a host that never answers) */
  lookup?: net.LookupFunction;
}

/** Connect one socket, with a timeout and an AbortSignal, mapping failures to one-line errors. */
export function connectSocket(target: HostPort, opts: ConnectOptions): Promise<net.Socket> {
  const address = formatHostPort(target.host, target.port);
  const signal = opts.signal;
  if (signal?.aborted) return Promise.reject(abortReason(signal, `connect to ${address}`));
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({
      host: target.host,
      port: target.port,
      allowHalfOpen: true,
      noDelay: true,
      ...(opts.lookup ? { lookup: opts.lookup } : {}),
    });
    const fail = (err: SmartcopyError): void => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const onError = (err: NodeJS.ErrnoException): void => fail(connectError(address, err));
    const onAbort = (): void => fail(abortReason(signal!, `connect to ${address}`));
    const timer = setTimeout(() => {
      fail(
        new SmartcopyError(
          'SC_ERR_TIMEOUT',
          `cannot connect to ${address}: no answer within ${opts.timeoutMs / 1000} s — check the address and firewalls`,
          { retryable: true },
        ),
      );
    }, opts.timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      cleanup();
      resolve(socket);
    });
  });
}
