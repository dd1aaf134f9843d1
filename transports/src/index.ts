export type {
  Connection,
  DialOptions,
  Listener,
  ListenOptions,
  Stream,
  StreamReader,
  StreamState,
  Transport,
  TransportFeatures,
} from './types.js';
export { CONNECT_TIMEOUT_MS, STREAM_HIGH_WATER_MARK, STREAM_MAX_BUFFERED } from './types.js';
export { AbstractStream } from './abstract-stream.js';
export type { AbstractStreamInit, WriteCallback } from './abstract-stream.js';
export { AbstractConnection, abortReason } from './abstract-connection.js';
export { createMemoryPair, MEMORY_FEATURES, MemoryStream, memoryTransport } from './memory/index.js';
export type { MemoryTransportInit } from './memory/index.js';
export {
  DEFAULT_TCP_LISTEN_HOST,
  DEFAULT_TCP_PORT,
  formatHostPort,
  parseHostPort,
  TCP_FEATURES,
  TcpStream,
  tcpTransport,
} from './tcp/index.js';
export type { TcpTransportInit } from './tcp/index.js';
export { ConnectionPool, poolKey, POOL_IDLE_TIMEOUT_MS, POOL_MAX_PER_KEY, POOL_MAX_QUEUE } from './pool/pool.js';
export type { ConnectionPoolOptions, Dialer, PoolLease, PoolStats } from './pool/pool.js';
