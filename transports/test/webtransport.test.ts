import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import {
  certificateFingerprint,
  fetchWebTransportCertificate,
  generateWebTransportCertificate,
  publicKeyFingerprint,
  WEBTRANSPORT_CERT_DAYS,
  WEBTRANSPORT_HTTP2_WINDOW,
  webTransportTransport,
} from '../src/index.js';
import type { Stream, WebTransportConnection, WebTransportListener, WebTransportTransportInit } from '../src/index.js';
import { randomBytes, runTransportCompliance, sha256, sink, transportHarness, until } from './compliance.js';

const MiB = 1024 * 1024;

const identity = await generateWebTransportCertificate({ hosts: ['127.0.0.1', 'localhost'] });
const other = await generateWebTransportCertificate();

/** A transport that serves `identity` and, dialing, pins it. */
function transport(extra: WebTransportTransportInit = {}) {
  return webTransportTransport({
    certPem: identity.certPem,
    keyPem: identity.keyPem,
    serverCertificateHashes: [identity.fingerprint],
    ...extra,
  });
}

runTransportCompliance('webtransport over HTTP/2 (127.0.0.1:0)', transportHarness(transport(), { host: '127.0.0.1', port: 0 }));

/** Listen, dial, and pair streams in accept order; stop() releases everything. */
async function setup(init: WebTransportTransportInit = {}, dialInit: WebTransportTransportInit = init) {
  const accepted: Stream[] = [];
  const waiters: ((s: Stream) => void)[] = [];
  const listener = await transport(init).listen({ host: '127.0.0.1', port: 0 }, (s) => {
    const w = waiters.shift();
    if (w) w(s);
    else accepted.push(s);
  });
  const conn = await transport(dialInit).dial(listener.address);
  const nextAccepted = (): Promise<Stream> => (accepted.length > 0 ? Promise.resolve(accepted.shift()!) : new Promise((r) => waiters.push(r)));
  return {
    listener,
    conn,
    /** open one stream; the matching accepted one comes with it (streams are accepted in order) */
    async open(): Promise<[Stream, Stream]> {
      const c = await conn.openStream();
      // the peer sees a stream with its first capsule, which openStream sends at once
      return [c, await nextAccepted()];
    },
    async stop(): Promise<void> {
      conn.abort();
      await listener.close({ abortStreams: true });
      await conn.closed;
    },
  };
}

/** Write `data` in pieces whose sizes cycle through `sizes`, honouring backpressure. */
async function writeSplit(stream: Stream, data: Buffer, sizes: readonly number[]): Promise<void> {
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    if (!stream.write(data.subarray(off, off + n))) await stream.drain();
    off += n;
  }
}

/** A TCP server that accepts connections and never says anything (a stuck or wrong service). */
async function silentServer() {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0, closed: 0 };
  const server = net.createServer((sock) => {
    state.connections++;
    sockets.add(sock);
    // reading (and dropping) what arrives lets it see the client close
    sock.resume();
    sock.on('error', () => undefined);
    sock.on('close', () => {
      state.closed++;
      sockets.delete(sock);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return state.connections;
    },
    get closed() {
      return state.closed;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const ODD_SIZES = [1, 7, 16_383, 16_385, 65_537, 3, 1_048_577, 131_071, 4_099, 262_147];

describe('webtransport transport', () => {
  it('declares its features and serves HTTP/2', { timeout: 30_000 }, async () => {
    assert.deepEqual({ ...transport().features }, { sameHost: false, multiplexed: true, encrypted: true });
    const h = await setup();
    try {
      assert.equal(h.conn.http, 'h2');
      assert.ok((h.listener as WebTransportListener).http.includes('h2'));
      assert.match(h.listener.address, /^127\.0\.0\.1:\d+$/);
    } finally {
      await h.stop();
    }
  });

  it('widens the HTTP/2 windows under the session, both ways', { timeout: 30_000 }, async () => {
    // with HTTP/2's 64 KiB defaults a session would move 64 KiB per round trip
    const h = await setup();
    try {
      const [c, s] = await h.open();
      sink(s);
      sink(c);
      await Promise.all([c.end(), s.end()]);
      await until(() => (h.conn.http2Windows?.send ?? 0) > WEBTRANSPORT_HTTP2_WINDOW - 64 * 1024);
      assert.ok(h.conn.http2Windows!.receive > WEBTRANSPORT_HTTP2_WINDOW - 64 * 1024, JSON.stringify(h.conn.http2Windows));
    } finally {
      await h.stop();
    }
  });

  it('moves 64 MiB each way on 4 streams at once, writes split at odd sizes, beyond every flow-control window', { timeout: 120_000 }, async () => {
    // far more than the package's 16 KiB initial session window, our 64 MiB session window,
    // the 4 MiB stream windows and the HTTP/2 windows, in both directions at once (HTTP/2
    // windows larger than the socket buffers deadlock exactly here)
    const h = await setup();
    try {
      const pairs = await Promise.all([h.open(), h.open(), h.open(), h.open()]);
      await Promise.all(
        pairs.map(async ([c, s], i) => {
          const up = randomBytes(16 * MiB + i);
          const down = randomBytes(16 * MiB + 3 * i);
          const atServer = sink(s);
          const atClient = sink(c);
          const sizes = ODD_SIZES.slice(i).concat(ODD_SIZES.slice(0, i));
          await Promise.all([writeSplit(c, up, sizes), writeSplit(s, down, sizes.slice().reverse())]);
          await Promise.all([c.end(), s.end()]);
          const [u, d] = await Promise.all([atServer.result, atClient.result]);
          assert.equal(u.bytes, up.length);
          assert.equal(u.sha256, sha256(up), `stream ${i} upstream`);
          assert.equal(d.bytes, down.length);
          assert.equal(d.sha256, sha256(down), `stream ${i} downstream`);
          await Promise.all([c.closed, s.closed]);
          assert.equal(c.state, 'closed');
          assert.equal(s.state, 'closed');
        }),
      );
    } finally {
      await h.stop();
    }
  });

  it('sees the end of every one of 400 short streams while bulk data shares the session', { timeout: 120_000 }, async () => {
    // 400 > the 100 stream credits the package grants by default (it never returns the credit
    // of a cleanly closed stream). A bulk stream running meanwhile puts the short streams' FIN
    // capsules at arbitrary offsets of the HTTP/2 byte stream, so some straddle frame and read
    // boundaries; each must still end its stream.
    const h = await setup();
    try {
      const [bulkC, bulkS] = await h.open();
      const bulk = randomBytes(24 * MiB);
      const bulkGot = sink(bulkS);
      const bulkDone = writeSplit(bulkC, bulk, ODD_SIZES).then(() => bulkC.end());
      let ends = 0;
      const shortOne = async (i: number): Promise<void> => {
        const [c, s] = await h.open();
        const msg = randomBytes(1 + ((i * 7919) % 20_000));
        const atServer = sink(s, { keep: true });
        const atClient = sink(c, { keep: true });
        await writeSplit(c, msg, [1 + (i % 5), 16_385, 7]);
        await c.end();
        const got = await atServer.result;
        assert.ok(got.data!.equals(msg), `short stream ${i}`);
        ends++;
        s.write(got.data!.subarray(0, 1 + (i % 97)));
        await s.end();
        assert.equal((await atClient.result).bytes, 1 + (i % 97));
        ends++;
        await Promise.all([c.closed, s.closed]);
      };
      const waves = 8;
      for (let w = 0; w < waves; w++) await Promise.all(Array.from({ length: 50 }, (_, k) => shortOne(w * 50 + k)));
      assert.equal(ends, 800, 'both ends of every short stream were seen');
      await bulkDone;
      assert.equal((await bulkGot.result).sha256, sha256(bulk));
      sink(bulkC);
      await bulkS.end();
      await Promise.all([bulkC.closed, bulkS.closed]);
      assert.ok(h.conn.streamsOpened >= 401);
    } finally {
      await h.stop();
    }
  });

  it('a paused reader holds the writer back within the stream window; nothing is lost', { timeout: 60_000 }, async () => {
    const h = await setup({ streamWindow: 1 * MiB, sessionWindow: 8 * MiB });
    try {
      const [c, s] = await h.open();
      const got = sink(s);
      s.pause();
      const data = randomBytes(32 * MiB);
      let acked = 0;
      let off = 0;
      // ignore backpressure on purpose: the write callbacks say how far the transport took it
      for (; off < data.length; off += MiB) c.write(data.subarray(off, off + MiB), () => (acked += MiB));
      await new Promise((r) => setTimeout(r, 300));
      // one stream window at the peer, plus the capsules the package had already handed to
      // HTTP/2 and the writable's queue (a few 64 KiB pieces)
      assert.ok(acked <= 4 * MiB, `the writer got ${acked / MiB} MiB past a paused reader`);
      assert.equal(got.received, 0);
      s.resume();
      await c.end();
      const r = await got.result;
      assert.equal(r.sha256, sha256(data));
      assert.equal(acked, data.length);
      sink(c);
      await s.end();
      await Promise.all([c.closed, s.closed]);
    } finally {
      await h.stop();
    }
  });

  it('a connection refuses streams beyond maxStreamsPerSession (retryable ConnectionClosedError)', { timeout: 30_000 }, async () => {
    const h = await setup({ maxStreamsPerSession: 3 });
    try {
      for (let i = 0; i < 3; i++) {
        const [c, s] = await h.open();
        sink(c);
        sink(s);
        await Promise.all([c.end(), s.end()]);
      }
      await assert.rejects(h.conn.openStream(), (e: unknown) => {
        assert.ok(e instanceof ConnectionClosedError);
        assert.equal(e.retryable, true);
        assert.match(e.message, /has carried 3 streams/);
        return true;
      });
    } finally {
      await h.stop();
    }
  });

  it('the listener closing with abortStreams closes the session: client streams and connection fail', { timeout: 30_000 }, async () => {
    const h = await setup();
    const [c, s] = await h.open();
    const errors: Error[] = [];
    c.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
    sink(s);
    await h.listener.close({ abortStreams: true });
    await Promise.all([c.closed, s.closed, h.conn.closed]);
    await until(() => errors.length === 1);
    assert.ok(errors[0] instanceof ConnectionClosedError, String(errors[0]));
    assert.equal(c.state, 'aborted');
    await assert.rejects(h.conn.openStream(), ConnectionClosedError);
    await h.stop();
  });

  it('a graceful connection close() lets the last written bytes and FIN arrive first', { timeout: 30_000 }, async () => {
    const h = await setup();
    try {
      const [c, s] = await h.open();
      const data = randomBytes(3 * MiB + 17);
      const got = sink(s);
      sink(c);
      c.write(data);
      const serverEnded = got.result.then(() => s.end());
      await h.conn.close();
      assert.equal((await got.result).sha256, sha256(data));
      await serverEnded;
      await s.closed;
      assert.equal(s.state, 'closed');
    } finally {
      await h.stop();
    }
  });
});

describe('webtransport server identity', () => {
  it('a wrong certificate hash is refused with SC_ERR_AUTH naming both fingerprints', { timeout: 30_000 }, async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, (s) => s.abort());
    try {
      const t = webTransportTransport({ serverCertificateHashes: [other.fingerprint] });
      await assert.rejects(t.dial(l.address), (e: unknown) => {
        assert.ok(e instanceof SmartcopyError, String(e));
        assert.equal(e.code, 'SC_ERR_AUTH');
        assert.equal(
          e.message,
          `WebTransport server ${l.address} presented certificate ${identity.fingerprint}, not the pinned ${other.fingerprint} — refusing to connect`,
        );
        return true;
      });
    } finally {
      await l.close();
    }
  });

  it('hashes are accepted in hex with colons too; invalid ones are a usage error', { timeout: 30_000 }, async () => {
    // OpenSSL's `x509 -fingerprint -sha256` form
    const hex = Buffer.from(identity.fingerprint.slice('SHA256:'.length), 'base64').toString('hex');
    assert.equal(hex.length, 64);
    const colons = hex.match(/../g)!.join(':').toUpperCase();
    const h = await setup({}, { serverCertificateHashes: [colons] });
    await h.stop();
    assert.throws(() => webTransportTransport({ serverCertificateHashes: ['not-a-hash'] }), { code: 'SC_ERR_USAGE' });
  });

  it('a pinned certificate valid for more than 14 days is refused, and the error says why', { timeout: 30_000 }, async () => {
    const { generate } = (await import('selfsigned')) as typeof import('selfsigned');
    const long = await generate([{ name: 'commonName', value: 'long' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      notBeforeDate: new Date(Date.now() - 3_600_000),
      notAfterDate: new Date(Date.now() + 365 * 86_400_000),
    });
    const fp = certificateFingerprint(long.cert);
    const l = await webTransportTransport({ certPem: long.cert, keyPem: long.private }).listen({ host: '127.0.0.1', port: 0 }, () => {});
    try {
      await assert.rejects(webTransportTransport({ serverCertificateHashes: [fp] }).dial(l.address), (e: unknown) => {
        assert.ok(e instanceof SmartcopyError);
        assert.equal(e.code, 'SC_ERR_AUTH');
        assert.match(e.message, /presented the pinned certificate .* valid for 36[56] days.*at most 14 days/);
        return true;
      });
    } finally {
      await l.close();
    }
  });

  it('without hashes a self-signed certificate is not trusted (SC_ERR_AUTH with its fingerprint)', { timeout: 30_000 }, async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, () => {});
    try {
      await assert.rejects(webTransportTransport().dial(l.address), (e: unknown) => {
        assert.ok(e instanceof SmartcopyError);
        assert.equal(e.code, 'SC_ERR_AUTH');
        assert.ok(e.message.includes('not trusted'), e.message);
        assert.ok(e.message.includes(identity.fingerprint), e.message);
        return true;
      });
    } finally {
      await l.close();
    }
  });

  it('verifyPeer sees the certificate before the session; accepting pins it, throwing refuses', { timeout: 30_000 }, async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, (s) => {
      sink(s);
      void s.end();
    });
    try {
      const seen: string[] = [];
      const ok = webTransportTransport({
        verifyPeer: (peer) => {
          seen.push(peer.fingerprint, peer.publicKeyFingerprint, peer.address);
          assert.equal(peer.trusted, false);
        },
      });
      const conn: WebTransportConnection = await ok.dial(l.address);
      assert.deepEqual(seen, [identity.fingerprint, identity.publicKeyFingerprint, l.address]);
      const c = await conn.openStream();
      await c.end();
      await sink(c).result;
      await conn.close();

      const no = webTransportTransport({
        verifyPeer: () => {
          throw new Error('unknown agent');
        },
      });
      await assert.rejects(no.dial(l.address), { code: 'SC_ERR_AUTH', message: `WebTransport server ${l.address} refused: unknown agent` });
    } finally {
      await l.close();
    }
  });

  it('fetches the certificate for trust on first use; renewal with the same key keeps the key fingerprint', { timeout: 30_000 }, async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, () => {});
    try {
      const peer = await fetchWebTransportCertificate({ host: '127.0.0.1', port: l.port }, { timeoutMs: 5000 });
      assert.equal(peer.fingerprint, identity.fingerprint);
      assert.ok(peer.validTo.getTime() - peer.validFrom.getTime() <= WEBTRANSPORT_CERT_DAYS * 86_400_000);
    } finally {
      await l.close();
    }
    const renewed = await generateWebTransportCertificate({ keyPem: identity.keyPem });
    assert.notEqual(renewed.fingerprint, identity.fingerprint);
    assert.equal(renewed.publicKeyFingerprint, identity.publicKeyFingerprint);
    assert.equal(publicKeyFingerprint(renewed.certPem), identity.publicKeyFingerprint);
    await assert.rejects(generateWebTransportCertificate({ days: 30 }), { code: 'SC_ERR_USAGE' });
  });
});

describe('webtransport failures', () => {
  it('connection refused → SC_ERR_CONNECT', { timeout: 30_000 }, async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, () => {});
    const address = l.address;
    await l.close();
    await assert.rejects(transport().dial(address), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_CONNECT');
      assert.match(e.message, /connection refused/);
      return true;
    });
  });

  it('a listener without certificate is a usage error; so is a busy port', { timeout: 30_000 }, async () => {
    await assert.rejects(webTransportTransport().listen({ port: 0 }, () => {}), { code: 'SC_ERR_USAGE' });
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, () => {});
    try {
      await assert.rejects(transport().listen({ host: '127.0.0.1', port: l.port }, () => {}), (e: unknown) => {
        assert.ok(e instanceof SmartcopyError);
        assert.equal(e.code, 'SC_ERR_CONNECT');
        assert.match(e.message, /address already in use/);
        return true;
      });
    } finally {
      await l.close();
    }
  });

  it('dial aborted by its AbortSignal → SC_ERR_ABORTED, before or during the handshake', { timeout: 30_000 }, async () => {
    await assert.rejects(transport().dial('127.0.0.1:1', { signal: AbortSignal.abort() }), { code: 'SC_ERR_ABORTED' });
    const silent = await silentServer();
    try {
      const ac = new AbortController();
      const dialing = transport().dial(`127.0.0.1:${silent.port}`, { signal: ac.signal });
      await until(() => silent.connections > 0);
      ac.abort();
      await assert.rejects(dialing, { code: 'SC_ERR_ABORTED' });
      // the abandoned HTTP/2 connection is dropped, not left to the package's own timeout
      await until(() => silent.closed > 0);
    } finally {
      await silent.close();
    }
  });

  it('a server that never answers the handshake → SC_ERR_TIMEOUT', { timeout: 30_000 }, async () => {
    const silent = await silentServer();
    try {
      await assert.rejects(transport({ connectTimeoutMs: 200 }).dial(`127.0.0.1:${silent.port}`), (e: unknown) => {
        assert.ok(e instanceof SmartcopyError);
        assert.equal(e.code, 'SC_ERR_TIMEOUT');
        assert.match(e.message, /no WebTransport session within 0\.2 s/);
        return true;
      });
      await until(() => silent.closed > 0);
    } finally {
      await silent.close();
    }
  });

  it('a session refused by the server (another path) → SC_ERR_CONNECT asking whether it is an agent', { timeout: 30_000 }, async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, () => {});
    try {
      await assert.rejects(transport({ path: '/elsewhere' }).dial(l.address), (e: unknown) => {
        assert.ok(e instanceof SmartcopyError);
        assert.equal(e.code, 'SC_ERR_CONNECT');
        assert.match(e.message, /refused the session — is it a smartcopy WebTransport agent\?/);
        return true;
      });
    } finally {
      await l.close();
    }
  });
});
