import { randomBytes } from 'node:crypto';
import {
  MIN_PROTOCOL_VERSION,
  MsgType,
  PROTOCOL_VERSION,
  ProtocolError,
  SOFTWARE_VERSION,
  SUPPORTED_FEATURES,
  SmartcopyError,
  errorFromFrame,
  msgTypeName,
  type AuthResult,
  type ErrorMsg,
  type Frame,
  type Welcome,
} from '@smartcopy/protocol';
import { Channel, FEATURE_FSYNC, clientProof, newNonce, proofMatches, serverProof } from '@smartcopy/agent';
import type { Connection } from '@smartcopy/transports';

export const HANDSHAKE_TIMEOUT_MS = 15_000;

export interface HandshakeOptions {
  sessionId: string;
  index: number;
  count: number;
  token: Buffer | undefined;
  fsync: boolean;
  signal?: AbortSignal;
}

export function newSessionId(): string {
  return randomBytes(12).toString('base64url');
}

/** Streams that ended a session cleanly (BYE answered) and may carry the next one. */
const idleChannels = new WeakMap<Connection, Channel[]>();

/** Keep a stream whose session ended cleanly for the next session on the same connection. */
export function recycleChannel(conn: Connection, ch: Channel): void {
  let list = idleChannels.get(conn);
  if (!list) idleChannels.set(conn, (list = []));
  list.push(ch);
}

async function takeChannel(conn: Connection, signal?: AbortSignal): Promise<Channel> {
  const list = idleChannels.get(conn);
  while (list && list.length > 0) {
    const ch = list.pop()!;
    if (ch.isOpen) return ch;
  }
  return new Channel(await conn.openStream({ signal }));
}

/** Open one stream (or reuse an idle one of this connection) and run Hello / Welcome / Auth on it. */
export async function openChannel(conn: Connection, o: HandshakeOptions): Promise<{ ch: Channel; welcome: Welcome }> {
  const ch = await takeChannel(conn, o.signal);
  const clientNonce = newNonce();
  try {
    const welcome = await new Promise<Welcome>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new SmartcopyError('SC_ERR_TIMEOUT', `no answer from the agent at ${conn.remoteAddress} within ${HANDSHAKE_TIMEOUT_MS / 1000} s`)),
        HANDSHAKE_TIMEOUT_MS,
      );
      timer.unref();
      let welcome: Welcome | undefined;
      const done = (err?: unknown, w?: Welcome): void => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(w!);
      };
      ch.setHandler((f: Frame) => {
        if (f.type === MsgType.ERROR) return done(errorFromFrame(f.header as ErrorMsg));
        if (!welcome) {
          if (f.type !== MsgType.WELCOME) return done(new ProtocolError('SC_ERR_PROTOCOL', `expected WELCOME from the agent, got ${msgTypeName(f.type)}`));
          welcome = f.header as Welcome;
          if (!welcome.authRequired) return done(undefined, welcome);
          if (!o.token) {
            return done(new SmartcopyError('SC_ERR_AUTH', `the agent at ${conn.remoteAddress} requires a token: pass --token-file FILE or set SMARTCOPY_TOKEN`));
          }
          ch.send(MsgType.AUTH, { mac: clientProof(o.token, clientNonce, welcome.serverNonce, o.sessionId) });
          return;
        }
        if (f.type !== MsgType.AUTH_RESULT) return done(new ProtocolError('SC_ERR_PROTOCOL', `expected AUTH_RESULT, got ${msgTypeName(f.type)}`));
        const r = f.header as AuthResult;
        if (!r.ok) return done(new SmartcopyError('SC_ERR_AUTH', `authentication failed at ${conn.remoteAddress}: wrong token (check --token-file / SMARTCOPY_TOKEN)`));
        if (!proofMatches(serverProof(o.token!, clientNonce, welcome.serverNonce, o.sessionId), r.serverMac)) {
          return done(new SmartcopyError('SC_ERR_AUTH', `the agent at ${conn.remoteAddress} could not prove it holds the token; refusing to continue`));
        }
        done(undefined, welcome);
      });
      void ch.whenClosed().then((err) =>
        done(err ?? new SmartcopyError('SC_ERR_CONNECTION_CLOSED', `the agent at ${conn.remoteAddress} closed the connection during the handshake`)),
      );
      ch.send(MsgType.HELLO, {
        version: PROTOCOL_VERSION,
        minVersion: MIN_PROTOCOL_VERSION,
        features: o.fsync ? [...SUPPORTED_FEATURES, FEATURE_FSYNC] : [...SUPPORTED_FEATURES],
        clientNonce,
        sessionId: o.sessionId,
        streamIndex: o.index,
        streamCount: o.count,
        clientVersion: SOFTWARE_VERSION,
      });
    });
    return { ch, welcome };
  } catch (e) {
    ch.abort(e as Error);
    throw e;
  }
}
