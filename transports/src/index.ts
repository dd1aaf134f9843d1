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
export { describeStreamError, PipeStream, stdioStream } from './stdio/index.js';
export type { PipeStreamInit } from './stdio/index.js';
// SSH pulls in ssh2 and ssh-config (100-200 ms of start-up), so the package root exports only
// what needs neither; import the rest from '@smartcopy/transports/ssh/index' when SSH is used.
export {
  isRemoteCommandNotFound,
  RemoteCommandError,
  RemoteCommandNotFoundError,
  SshExecStream,
} from './ssh/exec-stream.js';
export type {
  AskPassphrase,
  ExecOptions as SshExecOptions,
  PassphraseRequest,
  RemoteExit,
  ResolvedSshHost,
  SshAlgorithms,
  SshCipher,
  SshHop,
  SshOptions,
  SshResolveOptions,
  SshTarget,
  StrictHostKeyChecking,
} from './ssh/index.js';
export {
  CERT_FILE,
  certificateFingerprint,
  DEFAULT_CERT_DIR,
  DEFAULT_QUIC_LISTEN_HOST,
  DEFAULT_QUIC_PORT,
  KEY_FILE,
  loadOrCreateCertificate,
  normalizeFingerprint,
  parseQuicAddress,
  pinFingerprint,
  QUIC_ALPN,
  QUIC_DEFAULT_PAYLOAD,
  QUIC_FEATURES,
  QUIC_IDLE_TIMEOUT_MS,
  QUIC_MAX_PAYLOAD,
  QUIC_MIN_PAYLOAD,
  QuicConnection,
  QuicStream,
  quicTransport,
} from './quic/index.js';
export type {
  QuicCertificate,
  QuicConnectionStats,
  QuicListener,
  QuicListenerStats,
  QuicPeerIdentity,
  QuicTransport,
  QuicTransportInit,
  VerifyPeer,
} from './quic/index.js';
export {
  certificateHashes,
  DEFAULT_WEBTRANSPORT_LISTEN_HOST,
  DEFAULT_WEBTRANSPORT_PORT,
  fetchWebTransportCertificate,
  generateWebTransportCertificate,
  parseWebTransportAddress,
  pinnableProblem,
  publicKeyFingerprint,
  validityDays,
  WEBTRANSPORT_CERT_DAYS,
  WEBTRANSPORT_FEATURES,
  WEBTRANSPORT_HTTP2_WINDOW,
  WEBTRANSPORT_MAX_CERT_DAYS,
  WEBTRANSPORT_MAX_STREAMS_PER_SESSION,
  WEBTRANSPORT_PATH,
  WEBTRANSPORT_SESSION_WINDOW,
  WEBTRANSPORT_STREAM_WINDOW,
  WEBTRANSPORT_WRITE_CHUNK,
  WebTransportConnection,
  WebTransportStream,
  webTransportTransport,
} from './webtransport/index.js';
export type {
  ProbeOptions,
  WebTransportCertificate,
  WebTransportCertificateOptions,
  WebTransportListener,
  WebTransportPeerIdentity,
  WebTransportTransport,
  WebTransportTransportInit,
  WebTransportVerifyPeer,
} from './webtransport/index.js';
