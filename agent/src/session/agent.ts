import {
  FEATURE_NATIVE_COPY,
  MIN_PROTOCOL_VERSION,
  MsgType,
  PROTOCOL_VERSION,
  ProtocolError,
  SOFTWARE_VERSION,
  SUPPORTED_FEATURES,
  HandlerTable,
  SmartcopyError,
  msgTypeName,
  negotiate,
  type Auth,
  type Frame,
  type Hello,
} from '@smartcopy/protocol';
import type { Stream } from '@smartcopy/transports';
import { Applier } from '../apply/index.js';
import { PathJail } from '../jail/index.js';
import { serveRead, type SenderConfig } from '../transfer/index.js';
import { clientProof, newNonce, proofMatches, serverProof } from './auth.js';
import { Channel } from './channel.js';
import { serveList } from './list.js';
import { NativeBatcher } from './native-batcher.js';
import { StreamReceiver, type ReceiverContext } from './receiver.js';

/** Named defaults of the agent. */
export const HELLO_TIMEOUT_MS = 10_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
export const DEFAULT_MAX_SESSIONS = 64;
/** Client feature asking the receiver to fsync every file before its rename. */
export const FEATURE_FSYNC = 'fsync';

export interface AgentConfig {
  /** the directory this agent serves; every path is resolved inside it */
  root: string;
  createRoot?: boolean;
  readOnly?: boolean;
  /** shared secret for challenge-response auth; undefined = no auth (loopback or --insecure) */
  token?: Uint8Array;
  /** the agent runs in the client's process (local copy): native copies from source paths allowed */
  sameHost?: boolean;
  maxSessions?: number;
  idleTimeoutMs?: number;
  /** one line per notable event (connections, refusals); the server prints these */
  log?: (line: string) => void;
}

interface SessionCtx {
  id: string;
  receiver: ReceiverContext;
  sender: SenderConfig;
  streams: number;
}

interface StreamCtx {
  ch: Channel;
  state: 'hello' | 'auth' | 'ready' | 'closed';
  hello: Hello | undefined;
  serverNonce: Buffer;
  session: SessionCtx | undefined;
  receiver: StreamReceiver | undefined;
  idle: NodeJS.Timeout | undefined;
  abort: AbortController;
}

/**
 * The agent's session handler: takes streams from any transport, runs the handshake (version,
 * features, token auth), groups streams into sessions by session id, and serves listings,
 * receiving (push) and sending (pull). It knows nothing of sockets.
 */
export class Agent {
  private readonly sessions = new Map<string, SessionCtx>();
  private readonly streams = new Set<StreamCtx>();
  private closing = false;

  private constructor(
    private readonly cfg: AgentConfig,
    readonly jail: PathJail,
  ) {}

  static async open(cfg: AgentConfig): Promise<Agent> {
    const jail = await PathJail.open(cfg.root, { create: cfg.createRoot ?? false });
    return new Agent(cfg, jail);
  }

  get activeSessions(): number {
    return this.sessions.size;
  }

  private log(line: string): void {
    this.cfg.log?.(line);
  }

  handleStream(stream: Stream): void {
    const ch = new Channel(stream);
    if (this.closing) {
      ch.fail(new SmartcopyError('SC_ERR_BUSY', 'the agent is shutting down'));
      return;
    }
    const sc: StreamCtx = {
      ch,
      state: 'hello',
      hello: undefined,
      serverNonce: newNonce(),
      session: undefined,
      receiver: undefined,
      idle: undefined,
      abort: new AbortController(),
    };
    this.streams.add(sc);
    sc.idle = setTimeout(() => ch.fail(new SmartcopyError('SC_ERR_TIMEOUT', `no Hello within ${HELLO_TIMEOUT_MS / 1000} s`)), HELLO_TIMEOUT_MS);
    sc.idle.unref();
    ch.setHandler((f) => this.onFrame(sc, f));
    void ch.whenClosed().then((err) => this.onClosed(sc, err));
  }

  private resetIdle(sc: StreamCtx): void {
    if (sc.idle) clearTimeout(sc.idle);
    const ms = this.cfg.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    if (ms <= 0) return;
    sc.idle = setTimeout(() => {
      this.log(`closing idle stream after ${ms / 1000} s`);
      sc.ch.fail(new SmartcopyError('SC_ERR_TIMEOUT', `idle for ${ms / 1000} s; the agent closed the connection`));
    }, ms);
    sc.idle.unref();
  }

  private onFrame(sc: StreamCtx, f: Frame): void {
    switch (sc.state) {
      case 'hello':
        return this.onHello(sc, f);
      case 'auth':
        return this.onAuth(sc, f);
      case 'ready':
        this.resetIdle(sc);
        return this.onSessionFrame(sc, f);
      default:
        return;
    }
  }

  private onHello(sc: StreamCtx, f: Frame): void {
    if (f.type !== MsgType.HELLO) {
      throw new ProtocolError('SC_ERR_PROTOCOL', `expected HELLO as the first frame, got ${msgTypeName(f.type)}`);
    }
    const h = f.header as Hello;
    const agreed = negotiate(
      { version: PROTOCOL_VERSION, minVersion: MIN_PROTOCOL_VERSION, features: this.features() },
      { version: h.version, minVersion: h.minVersion, features: h.features },
    );
    if (!h.sessionId || h.sessionId.length > 64) throw new ProtocolError('SC_ERR_MALFORMED_FRAME', 'HELLO needs a session id of 1-64 characters');
    if (h.clientNonce.length < 16) throw new ProtocolError('SC_ERR_MALFORMED_FRAME', 'HELLO needs a client nonce of at least 16 bytes');
    sc.hello = h;
    // Refuse over the cap before the handshake completes, so the client learns why at once.
    if (!this.sessions.has(h.sessionId) && this.sessions.size >= (this.cfg.maxSessions ?? DEFAULT_MAX_SESSIONS)) {
      this.refuseBusy(sc);
      return;
    }
    const authRequired = this.cfg.token !== undefined;
    sc.ch.send(MsgType.WELCOME, {
      version: agreed.version,
      features: agreed.features,
      serverNonce: sc.serverNonce,
      authRequired,
      readOnly: this.cfg.readOnly ?? false,
      agentVersion: SOFTWARE_VERSION,
      sameHost: this.cfg.sameHost ?? false,
    });
    if (authRequired) {
      sc.state = 'auth';
    } else {
      this.attach(sc);
    }
  }

  private onAuth(sc: StreamCtx, f: Frame): void {
    if (f.type !== MsgType.AUTH) throw new ProtocolError('SC_ERR_PROTOCOL', `expected AUTH, got ${msgTypeName(f.type)}`);
    const h = sc.hello!;
    const token = this.cfg.token!;
    const expected = clientProof(token, h.clientNonce, sc.serverNonce, h.sessionId);
    if (!proofMatches(expected, (f.header as Auth).mac)) {
      this.log(`refused a client: wrong token (${sc.ch.stream.id})`);
      sc.ch.send(MsgType.AUTH_RESULT, { ok: false, message: 'authentication failed: the token does not match the agent\'s' });
      sc.state = 'closed';
      sc.ch.fail(new SmartcopyError('SC_ERR_AUTH', 'authentication failed: wrong token'));
      return;
    }
    sc.ch.send(MsgType.AUTH_RESULT, { ok: true, serverMac: serverProof(token, h.clientNonce, sc.serverNonce, h.sessionId) });
    this.attach(sc);
  }

  private features(): string[] {
    const all = [...SUPPORTED_FEATURES, FEATURE_FSYNC];
    return this.cfg.sameHost ? all : all.filter((x) => x !== FEATURE_NATIVE_COPY);
  }

  private attach(sc: StreamCtx): void {
    const h = sc.hello!;
    let s = this.sessions.get(h.sessionId);
    if (!s) {
      if (this.sessions.size >= (this.cfg.maxSessions ?? DEFAULT_MAX_SESSIONS)) {
        this.refuseBusy(sc);
        return;
      }
      // Each session verifies directories afresh (the jail caches what it checked).
      const jail = this.jail.fresh();
      const applier = new Applier(jail, {
        fsync: h.features.includes(FEATURE_FSYNC),
        preserveOwner: process.getuid?.() === 0,
      });
      s = {
        id: h.sessionId,
        receiver: {
          applier,
          sameHost: this.cfg.sameHost ?? false,
          readOnly: this.cfg.readOnly ?? false,
          batcher: new NativeBatcher(applier),
          stats: { files: 0, bytes: 0 },
        },
        sender: { jail, features: h.features },
        streams: 0,
      };
      this.sessions.set(h.sessionId, s);
    }
    s.streams++;
    sc.session = s;
    sc.receiver = new StreamReceiver(sc.ch, s.receiver);
    sc.state = 'ready';
    this.resetIdle(sc);
  }

  private refuseBusy(sc: StreamCtx): void {
    const max = this.cfg.maxSessions ?? DEFAULT_MAX_SESSIONS;
    this.log(`refused a session: ${this.sessions.size} sessions active (--max-sessions ${max})`);
    sc.state = 'closed';
    sc.ch.fail(new SmartcopyError('SC_ERR_BUSY', `the agent is busy: ${max} sessions active (--max-sessions); try again later`, { retryable: true }));
  }

  /** Frames of a stream inside a session that are not receiver frames, by type. */
  private readonly sessionFrames = new HandlerTable<StreamCtx>('in a session')
    .on(MsgType.LIST_REQUEST, (f, sc) => {
      serveList(sc.ch, sc.session!.sender.jail, f.header, sc.abort.signal).catch((e: unknown) => sc.ch.fail(e));
    })
    .on(MsgType.READ_REQUEST, (f, sc) => {
      serveRead(sc.ch, sc.session!.sender, f.header, sc.abort.signal, f.payload).catch((e: unknown) => sc.ch.fail(e));
    })
    .on(MsgType.RESUME_QUERY, (f, sc) => {
      const q = f.header;
      // A read-only agent never holds partial uploads; others offer the chunks that still check.
      const chunks = this.cfg.readOnly ? Promise.resolve([]) : sc.session!.receiver.applier.verifiedChunks(q.path, q.transferId);
      chunks.then(
        (list) => sc.ch.isOpen && sc.ch.send(MsgType.RESUME_INFO, { requestId: q.requestId, chunks: list }),
        (e: unknown) => sc.ch.fail(e),
      );
    })
    .on(MsgType.PING, (f, sc) => {
      if (!f.header.reply) sc.ch.send(MsgType.PING, { reply: true, nonce: f.header.nonce });
    })
    .on(MsgType.BYE, (_f, sc) => {
      // The stream leaves its session but stays open: a client's connection pool may start
      // another session on it with a new HELLO (or simply close it).
      sc.ch.send(MsgType.BYE, {});
      void this.detach(sc);
    })
    .on(MsgType.ERROR, () => {});

  private onSessionFrame(sc: StreamCtx, f: Frame): void {
    if (sc.receiver!.handle(f)) return;
    void this.sessionFrames.dispatch(f, sc);
  }


  private async detach(sc: StreamCtx): Promise<void> {
    const receiver = sc.receiver;
    const s = sc.session;
    sc.receiver = undefined;
    sc.session = undefined;
    sc.hello = undefined;
    sc.state = 'hello';
    sc.serverNonce = newNonce();
    sc.abort.abort();
    sc.abort = new AbortController();
    this.resetIdle(sc);
    await receiver?.abandon();
    if (s && --s.streams === 0) this.sessions.delete(s.id);
  }

  private async onClosed(sc: StreamCtx, err: SmartcopyError | undefined): Promise<void> {
    if (sc.idle) clearTimeout(sc.idle);
    sc.abort.abort();
    sc.state = 'closed';
    this.streams.delete(sc);
    if (err && err.code !== 'SC_ERR_CONNECTION_CLOSED') this.log(`stream ${sc.ch.stream.id} ended: ${err.code}: ${err.message}`);
    await sc.receiver?.abandon();
    const s = sc.session;
    if (s && --s.streams === 0) this.sessions.delete(s.id);
    void sc.ch.close();
  }

  /** Stop serving: abort every stream; whole-file .part files in flight are removed. */
  async close(): Promise<void> {
    this.closing = true;
    const all = [...this.streams];
    for (const sc of all) sc.ch.fail(new SmartcopyError('SC_ERR_INTERRUPTED', 'the agent is shutting down'));
    await Promise.all(all.map((sc) => sc.receiver?.abandon()));
  }
}
