import type { ReadableStream, WritableStream } from 'node:stream/web';
import { SmartcopyError } from '@smartcopy/protocol';

/**
 * The parts of `@fails-components/webtransport` 1.6 this transport uses, typed structurally:
 * the package's own declarations describe its internals loosely (many `any`), and naming only
 * what we touch makes an incompatible upgrade fail here, at compile time or in one place.
 */

/** One bidirectional stream as the WebTransport API hands it out. */
export interface WtBidiStream {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

/**
 * The package's per-stream object (HttpWTStream): incoming streams are handed out as this
 * object itself, outgoing ones as a {readable, writable} pair found again in the session's
 * `streamObjs`. Its `objint` is the protocol-side stream whose `stopReading()` is the only way
 * to stop the package from draining the peer's data into the readable's unbounded queue (see
 * webtransport-stream.ts).
 */
export interface WtStreamObject extends WtBidiStream {
  readonly objint?: WtReadControl;
}

export interface WtReadControl {
  stopReading(): void;
  startReading(): void;
}

export interface WtCloseInfo {
  closeCode: number;
  reason: string;
}

/** The Node HTTP/2 session under a WebTransport-over-HTTP/2 session (Node's public Http2Session API). */
export interface H2Session {
  readonly destroyed: boolean;
  readonly closed: boolean;
  readonly state: { readonly localWindowSize?: number; readonly remoteWindowSize?: number };
  setLocalWindowSize(size: number): void;
  settings(settings: { initialWindowSize: number }): void;
}

/**
 * The package's protocol-side session object. Over HTTP/2 it carries the session's CONNECT
 * stream, whose `session` is the HTTP/2 connection; over HTTP/3 it is native and has no stream.
 */
export interface WtNativeSession {
  readonly stream?: { readonly session?: H2Session };
}

/** A WebTransport session: HttpWTSession on the server, the WebTransport object on the client. */
export interface WtSession {
  readonly ready: Promise<unknown>;
  readonly closed: Promise<unknown>;
  readonly incomingBidirectionalStreams: ReadableStream<WtStreamObject>;
  createBidirectionalStream(): Promise<WtBidiStream>;
  close(info?: WtCloseInfo): void;
}

export interface WtServerSession extends WtSession {
  readonly peerAddress?: string;
  readonly objint?: WtNativeSession;
  readonly streamObjs?: Set<WtStreamObject>;
}

export interface WtClientSession extends WtSession {
  /** "reliable-only" on HTTP/2, "supports-unreliable" on HTTP/3 (once ready) */
  readonly reliability?: string;
  /** the client's HttpWTSession (holds streamObjs) and, through parentobj, the HTTP/2 client */
  readonly sessionint?: {
    readonly objint?: WtNativeSession;
    readonly streamObjs?: Set<WtStreamObject>;
    readonly parentobj?: { readonly transportInt?: { readonly clientInt?: { destroy(err?: Error): void } } };
  };
}

export interface WtServerInit {
  host: string;
  port: number;
  secret: string;
  cert: string;
  privKey: string;
  reliability?: 'reliableOnly' | 'both';
  initialStreamFlowControlWindow: number;
  streamFlowControlWindowSizeLimit: number;
  initialSessionFlowControlWindow: number;
  sessionFlowControlWindowSizeLimit: number;
  initialBidirectionalStreams: number;
  initialUnidirectionalStreams: number;
}

export interface WtServer {
  readonly ready: Promise<unknown>;
  startServer(): void;
  stopServer(): void;
  address(): { port: number; host: string } | null;
  sessionStream(path: string): ReadableStream<WtServerSession>;
}

export interface WtClientInit {
  serverCertificateHashes?: { algorithm: 'sha-256'; value: Uint8Array }[];
  forceReliable: boolean;
  quicConnectTimeout: number;
  webTransportConnectTimeout: number;
  initialStreamFlowControlWindow: number;
  streamFlowControlWindowSizeLimit: number;
  initialSessionFlowControlWindow: number;
  sessionFlowControlWindowSizeLimit: number;
}

export interface WtModule {
  Http2Server: new (init: WtServerInit) => WtServer;
  HttpServer: new (init: WtServerInit) => WtServer;
  WebTransport: new (url: string, init: WtClientInit) => WtClientSession;
  quicheLoaded: Promise<unknown>;
}

export interface LoadedWebTransport {
  readonly wt: WtModule;
  /** the package's native HTTP/3 part (an optional dependency) loaded */
  readonly http3: boolean;
}

const PACKAGE = '@fails-components/webtransport';
const HTTP3_PACKAGE = '@fails-components/webtransport-transport-http3-quiche';

/**
 * While the package looks for its optional HTTP/3 part it prints four messages with stack traces
 * (console.error and console.log) when that part is missing, which is the normal case here.
 * Only those messages are dropped, only during the import, and everything else passes through.
 */
function muteMissingHttp3Messages(): () => void {
  const { error, log } = console;
  const noise = (args: unknown[]): boolean =>
    args.some((a) => (typeof a === 'string' || a instanceof Error) && /http3|quiche/i.test(String(a instanceof Error ? a.message : a)));
  console.error = (...args: unknown[]) => {
    if (!noise(args)) error.apply(console, args);
  };
  console.log = (...args: unknown[]) => {
    if (!noise(args)) log.apply(console, args);
  };
  return () => {
    console.error = error;
    console.log = log;
  };
}

async function load(): Promise<LoadedWebTransport> {
  // Importing the HTTP/3 part ourselves first tells whether it is there (and loads); the package
  // imports the same module afterwards from the cache. A variable keeps TypeScript from
  // resolving a package that is normally absent.
  const http3Name: string = HTTP3_PACKAGE;
  let http3 = true;
  try {
    await import(http3Name);
  } catch {
    http3 = false;
  }
  const restore = http3 ? () => undefined : muteMissingHttp3Messages();
  try {
    let wt: WtModule;
    try {
      wt = (await import(PACKAGE)) as unknown as WtModule;
    } catch (err) {
      throw new SmartcopyError('SC_ERR_UNSUPPORTED', `WebTransport is not available: cannot load ${PACKAGE} (${(err as Error).message})`, { cause: err });
    }
    // the package's two loaders report their failure asynchronously; both have run once this
    // promise settled and one more macrotask passed
    await wt.quicheLoaded;
    await new Promise<void>((r) => setImmediate(r));
    return { wt, http3 };
  } finally {
    restore();
  }
}

let loading: Promise<LoadedWebTransport> | undefined;

/** The package, imported on first use (it is not needed unless WebTransport is used). */
export function loadWebTransport(): Promise<LoadedWebTransport> {
  loading ??= load();
  return loading;
}
