/**
 * A relay process for tests: `node relay.mjs PORT TOKEN` joins its stdin/stdout — through this
 * package's own stdioStream() — to a TCP socket on 127.0.0.1:PORT where the test listens, so the test holds both ends
 * of a stream that crosses a real process (and, over SSH, sshd and an exec channel).
 *
 * - EOF on either side is passed on as EOF (half-close works);
 * - an error on the socket is printed on stderr and the relay exits 1 (a failed command);
 * - SIGTERM (what an aborted exec stream sends first) resets the socket (TCP, so that a reset
 *   exists), and the test's end sees an abort; so does losing the reader of a stdout pipe (an SSH
 *   channel closed by an abort, where sshd could not deliver the signal).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TcpStream } from '../../src/index.js';
import type { Stream } from '../../src/index.js';
import type { HarnessFactory } from '../compliance.js';

const RELAY = `
import fs from 'node:fs';
import net from 'node:net';
import { stdioStream, TcpStream } from ${JSON.stringify(new URL('../../src/index.js', import.meta.url).href)};

const port = Number(process.argv[2]);
// decided before anything can close the channel: does sshd hold the reading end of our stdout?
const stdoutPipe = (() => {
  try {
    const l = fs.readlinkSync('/proc/self/fd/1');
    return l.startsWith('pipe:') ? l : undefined;
  } catch {
    return undefined;
  }
})();
const parentHolds = (link) => {
  try {
    return fs.readdirSync('/proc/' + process.ppid + '/fd').some((f) => {
      try {
        return fs.readlinkSync('/proc/' + process.ppid + '/fd/' + f) === link;
      } catch {
        return false;
      }
    });
  } catch {
    return true;
  }
};
const watchChannel = stdoutPipe !== undefined && parentHolds(stdoutPipe);
const a = stdioStream();
const sock = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
// installed before the test can accept us: a reset even after our FIN, so that the test's end
// sees an abort, not a clean end
process.on('SIGTERM', () => {
  try {
    sock.resetAndDestroy();
  } catch {
    sock.destroy();
  }
  a.abort();
  process.exit(143);
});
sock.once('error', (err) => {
  fs.writeSync(2, 'relay: cannot connect to 127.0.0.1:' + port + ': ' + err.message + '\\n');
  process.exit(1);
});
await new Promise((resolve) => sock.once('connect', resolve));
// the token pairs this connection with the stream that started us
sock.write(process.argv[3]);
const b = new TcpStream(sock, 'relay', {});
let failed = false;
const fail = (err) => {
  if (failed) return;
  failed = true;
  fs.writeSync(2, 'relay: ' + err.message + '\\n');
  a.abort(err);
  b.abort(err);
  process.exit(1);
};
const pipe = (from, to, beforeEnd) => {
  from.setReader({
    data(chunk) {
      if (!to.write(chunk)) {
        from.pause();
        to.drain().then(() => from.resume(), () => undefined);
      }
    },
    end() {
      beforeEnd().then((ok) => ok && to.end().catch(() => undefined));
    },
    error: fail,
  });
};

// sshd does not pass signals to root sessions, so an aborted exec stream reaches us only as a
// closed channel. ssh2 aborts with CHANNEL_CLOSE alone, and on it sshd drops its end of our
// stdout pipe at once but closes our stdin only after that (once its buffer for us drained): so
// at our stdin's EOF, a parent no longer holding our stdout means abort, and we reset the socket
// as an aborted stream would. A clean end (CHANNEL_EOF) leaves the channel, and the pipe, open.
const channelAborted = () => {
  if (failed) return;
  failed = true;
  try {
    sock.resetAndDestroy();
  } catch {
    sock.destroy();
  }
  a.abort();
  fs.writeSync(2, 'relay: the channel was closed under us\\n');
  process.exit(1);
};
// once we end stdout ourselves, sshd dropping its end is the normal course
let stdoutEnded = false;
const stdinEnded = async () => {
  if (!watchChannel || stdoutEnded || parentHolds(stdoutPipe)) return true;
  channelAborted();
  return false;
};
if (watchChannel) {
  const timer = setInterval(() => {
    if (stdoutEnded || a.state === 'aborted' || failed) return clearInterval(timer);
    if (!parentHolds(stdoutPipe)) channelAborted();
  }, 20);
  timer.unref();
}

pipe(a, b, stdinEnded);
pipe(b, a, async () => {
  stdoutEnded = true;
  return true;
});
await Promise.all([a.closed, b.closed]);
if (!failed) process.exit(0);
`;

/** Write the relay into `dir`; returns its path. */
export function writeRelayScript(dir: string): string {
  const file = path.join(dir, 'relay.mjs');
  fs.writeFileSync(file, RELAY);
  return file;
}

/** Starts one relay (argv = node, script, port, token) and returns the test's client end of it. */
export interface RelayStarter {
  start(argv: readonly string[]): Promise<Stream>;
  /** release what the starter opened (an SSH connection, child processes) */
  teardown(): Promise<void>;
}

const TOKEN_BYTES = 16;

/** The token a relay sends first, read off the socket before the stream takes it over. */
function readToken(sock: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const onReadable = (): void => {
      const b = sock.read(TOKEN_BYTES) as Buffer | null;
      if (b === null) return;
      done();
      resolve(b.toString('latin1'));
    };
    const onEnd = (): void => {
      done();
      reject(new Error('relay connection ended before its token'));
    };
    const done = (): void => {
      sock.off('readable', onReadable);
      sock.off('end', onEnd);
      sock.off('error', onEnd);
    };
    sock.on('readable', onReadable);
    sock.on('end', onEnd);
    sock.on('error', onEnd);
  });
}

/**
 * A compliance harness whose streams cross a relay process: the client end is whatever
 * `starter.start()` returns (a PipeStream over the child's stdio, an SSH exec stream), the
 * server end is a TcpStream over the loopback socket the relay connects to. Each relay first
 * sends a token from its command line, which pairs the two ends, so relays start in parallel.
 */
export function relayHarness(makeStarter: () => Promise<RelayStarter>): HarnessFactory {
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartcopy-relay-'));
    const script = writeRelayScript(dir);
    const every = new Set<Stream>();
    const pending = new Map<string, (s: Stream) => void>();
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
      readToken(sock).then(
        (token) => {
          const s = new TcpStream(sock, `relay:${sock.remotePort}`, {});
          every.add(s);
          const w = pending.get(token);
          pending.delete(token);
          if (w) w(s);
          else s.abort();
        },
        () => sock.destroy(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
    });
    const { port } = server.address() as net.AddressInfo;
    let starter: RelayStarter;
    try {
      starter = await makeStarter();
    } catch (err) {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return {
      async open() {
        const token = randomBytes(TOKEN_BYTES / 2).toString('hex');
        const accepted = new Promise<Stream>((r) => pending.set(token, r));
        const c = await starter.start([process.execPath, script, String(port), token]);
        every.add(c);
        return [c, await accepted];
      },
      async teardown() {
        for (const s of every) s.abort();
        await Promise.all([...every].map((s) => s.closed));
        await starter.teardown();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}
