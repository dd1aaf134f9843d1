import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import {
  certificateFingerprint,
  loadOrCreateCertificate,
  normalizeFingerprint,
  pinFingerprint,
  QUIC_DEFAULT_PAYLOAD,
  QUIC_MAX_PAYLOAD,
  quicTransport,
} from '../src/index.js';
import type { QuicTransportInit, Stream } from '../src/index.js';
import { RetryTokens } from '../src/quic/retry-token.js';
import { randomBytes, runTransportCompliance, sha256, sink, transportHarness, until, writeAll } from './compliance.js';

const MiB = 1024 * 1024;

const server = await generate([{ name: 'commonName', value: 'quic test agent' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
const other = await generate([{ name: 'commonName', value: 'someone else' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
const fingerprint = certificateFingerprint(server.cert);
const identity = { certPem: server.cert, keyPem: server.private };

/** Listener and dialer of the same transport, as the compliance harness uses it. */
function transport(extra: QuicTransportInit = {}): ReturnType<typeof quicTransport> {
  return quicTransport({ ...identity, verifyPeer: pinFingerprint(fingerprint), ...extra });
}

/** Errors a reader receives, in order. */
function errorsOf(s: Stream): Error[] {
  const errors: Error[] = [];
  s.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
  return errors;
}

/** Accepted streams, in order. */
function acceptor(): { streams: Stream[]; onStream: (s: Stream) => void } {
  const streams: Stream[] = [];
  return { streams, onStream: (s) => void streams.push(s) };
}

/**
 * A UDP relay between one client and a listener. `blackhole()` drops everything from then on
 * without a trace (a peer that vanished, or a cut cable); `close()` closes the client-facing
 * socket, so the client's next datagrams draw ICMP port-unreachable.
 */
async function udpRelay(target: string, lossRate = 0): Promise<{ address: string; dropped: number; blackhole(): void; close(): Promise<void> }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const front = dgram.createSocket('udp4');
  const back = dgram.createSocket('udp4');
  await Promise.all([new Promise<void>((r) => front.bind(0, '127.0.0.1', r)), new Promise<void>((r) => back.bind(0, '127.0.0.1', r))]);
  let client: dgram.RemoteInfo | undefined;
  let dropping = false;
  let dropped = 0;
  // deterministic losses: the same datagrams die on every run
  let seed = 0x2545f491;
  const lose = (): boolean => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    if (seed / 2 ** 32 >= lossRate) return false;
    dropped++;
    return true;
  };
  front.on('message', (m, r) => {
    client = r;
    if (!dropping && !lose()) back.send(m, port, host);
  });
  back.on('message', (m) => {
    if (!dropping && client && !lose()) front.send(m, client.port, client.address);
  });
  let closed = false;
  return {
    address: `127.0.0.1:${front.address().port}`,
    get dropped() {
      return dropped;
    },
    blackhole() {
      dropping = true;
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([new Promise<void>((r) => front.close(() => r())), new Promise<void>((r) => back.close(() => r()))]);
    },
  };
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sc-quic-'));
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

runTransportCompliance('quic transport (127.0.0.1:0)', transportHarness(transport(), { host: '127.0.0.1', port: 0 }));

runTransportCompliance(
  'quic transport, 16 KiB datagrams, no Retry',
  transportHarness(transport({ maxPayload: QUIC_MAX_PAYLOAD, retry: false }), { host: '127.0.0.1', port: 0 }),
  { bigWriteBytes: 8 * MiB, concurrentStreams: 8 },
);

describe('quic transport', () => {
  it('declares its features', () => {
    assert.deepEqual({ ...quicTransport().features }, { sameHost: false, multiplexed: true, encrypted: true });
    assert.equal(quicTransport().kind, 'quic');
  });

  it('validates its options', async () => {
    assert.throws(() => quicTransport({ maxPayload: 1199 }), { code: 'SC_ERR_USAGE' });
    assert.throws(() => quicTransport({ maxPayload: QUIC_MAX_PAYLOAD + 1 }), { code: 'SC_ERR_USAGE' });
    await assert.rejects(quicTransport().listen({ host: '127.0.0.1', port: 0 }, () => {}), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_USAGE');
      assert.match(e.message, /certificate and key/);
      return true;
    });
    await assert.rejects(quicTransport().dial('127.0.0.1:4433'), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_USAGE');
      assert.match(e.message, /without a way to check the server/);
      return true;
    });
    await assert.rejects(transport().dial('host:notaport'), { code: 'SC_ERR_USAGE' });
  });

  it('16 KiB datagrams when both ends allow them; the smaller setting wins otherwise', async () => {
    const big = transport({ maxPayload: QUIC_MAX_PAYLOAD });
    const small = transport();
    for (const [listenT, dialT, expected] of [
      [big, big, QUIC_MAX_PAYLOAD],
      [small, big, QUIC_DEFAULT_PAYLOAD],
      [big, small, QUIC_DEFAULT_PAYLOAD],
    ] as const) {
      const acc = acceptor();
      const l = await listenT.listen({ host: '127.0.0.1', port: 0 }, acc.onStream);
      const conn = await dialT.dial(l.address);
      const c = await conn.openStream();
      await until(() => acc.streams.length === 1);
      const s = acc.streams[0]!;
      const data = randomBytes(4 * MiB);
      const got = sink(s);
      await writeAll(c, [data]);
      await c.end();
      assert.equal((await got.result).sha256, sha256(data));
      assert.equal(conn.stats().maxDatagramSize, expected);
      if (expected === QUIC_MAX_PAYLOAD) {
        // 4 MiB in 16 KiB packets: far fewer than 1350-byte packets would need
        assert.ok(conn.stats().packetsSent < (4 * MiB) / 4000, `packets sent: ${conn.stats().packetsSent}`);
      }
      sink(c);
      await s.end();
      await conn.close();
      await l.close();
    }
  });

  it('a certificate with another fingerprint is refused: dial fails with SC_ERR_AUTH', async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, () => assert.fail('no stream may be accepted'));
    const wrong = certificateFingerprint(other.cert);
    const t = quicTransport({ verifyPeer: pinFingerprint(wrong) });
    await assert.rejects(t.dial(l.address), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_AUTH');
      assert.equal(e.message, `QUIC server ${l.address} presented certificate ${fingerprint}, not the pinned ${wrong} — refusing to connect`);
      return true;
    });
    // the refusal reaches the listener as a TLS alert, so it drops the connection at once
    await until(() => l.stats.connections === 0);
    assert.equal(l.stats.accepted, 1);
    await l.close();
  });

  it('verifyPeer sees the certificate; any error it throws becomes SC_ERR_AUTH', async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, () => {});
    const seen: { fingerprint: string; pem: string; address: string }[] = [];
    const t = quicTransport({
      verifyPeer: (peer) => {
        seen.push({ fingerprint: peer.fingerprint, pem: peer.certPem, address: peer.address });
        assert.equal(certificateFingerprint(peer.certDer), peer.fingerprint);
        throw new Error('not in known_agents');
      },
    });
    await assert.rejects(t.dial(l.address), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_AUTH');
      assert.equal(e.message, `QUIC server ${l.address} (${fingerprint}) refused: not in known_agents`);
      return true;
    });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.fingerprint, fingerprint);
    assert.equal(seen[0]!.address, l.address);
    assert.equal(new X509Certificate(seen[0]!.pem).fingerprint256, new X509Certificate(server.cert).fingerprint256);
    // an async hook that accepts
    const ok = quicTransport({ verifyPeer: async (peer) => void (await Promise.resolve(peer)) });
    const conn = await ok.dial(l.address);
    assert.equal(conn.peerFingerprint, fingerprint);
    await conn.close();
    await l.close();
  });

  it('CA verification: a certificate issued for the address by the CA passes; others are refused', async () => {
    const ca = await generate([{ name: 'commonName', value: 'test CA' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true },
      ],
    });
    const issue = (ip: string): ReturnType<typeof generate> =>
      generate([{ name: 'commonName', value: 'agent' }], {
        keyType: 'ec',
        algorithm: 'sha256',
        ca: { key: ca.private, cert: ca.cert },
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true },
          { name: 'extKeyUsage', serverAuth: true },
          { name: 'subjectAltName', altNames: [{ type: 7, ip }] },
        ],
      });
    const good = await issue('127.0.0.1');
    const elsewhere = await issue('10.9.8.7');
    const expectAuth = (re: RegExp) => (e: unknown) => {
      assert.ok(e instanceof SmartcopyError, String(e));
      assert.equal(e.code, 'SC_ERR_AUTH');
      assert.match(e.message, re);
      return true;
    };

    const l = await quicTransport({ certPem: good.cert, keyPem: good.private }).listen({ host: '127.0.0.1', port: 0 }, () => {});
    const conn = await quicTransport({ ca: ca.cert }).dial(l.address);
    await conn.close();
    // a CA that did not issue it: BoringSSL refuses during the handshake
    await assert.rejects(quicTransport({ ca: other.cert }).dial(l.address), expectAuth(/cannot verify QUIC server .*TLS alert/));
    // both checks configured: both must pass
    await assert.rejects(
      quicTransport({ ca: ca.cert, verifyPeer: pinFingerprint(fingerprint) }).dial(l.address),
      expectAuth(/not the pinned/),
    );
    await l.close();

    const l2 = await quicTransport({ certPem: elsewhere.cert, keyPem: elsewhere.private }).listen({ host: '127.0.0.1', port: 0 }, () => {});
    await assert.rejects(quicTransport({ ca: ca.cert }).dial(l2.address), expectAuth(/not issued for 127\.0\.0\.1/));
    await l2.close();
  });

  it('address validation: a new client is sent a Retry, and its token must come back', async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, () => {});
    const conn = await transport().dial(l.address);
    assert.deepEqual(l.stats, { connections: 1, accepted: 1, retries: 1, badTokens: 0 });
    await conn.close();
    await until(() => l.stats.connections === 0);
    await l.close();

    const noRetry = await transport({ retry: false }).listen({ host: '127.0.0.1', port: 0 }, () => {});
    const conn2 = await transport().dial(noRetry.address);
    assert.equal(noRetry.stats.retries, 0);
    assert.equal(noRetry.stats.accepted, 1);
    await conn2.close();
    await noRetry.close();
  });

  it('Retry tokens are bound to the address, port and connection id, and expire', () => {
    const tokens = new RetryTokens(10_000);
    const odcid = randomBytes(16);
    const scid = randomBytes(20);
    const t0 = 1_700_000_000_000;
    const token = tokens.mint('192.0.2.1', 5000, odcid, scid, t0);
    assert.deepEqual(tokens.verify(token, '192.0.2.1', 5000, scid, t0 + 1000), odcid);
    assert.equal(tokens.verify(token, '192.0.2.2', 5000, scid, t0 + 1000), undefined, 'another address');
    assert.equal(tokens.verify(token, '192.0.2.1', 5001, scid, t0 + 1000), undefined, 'another port');
    assert.equal(tokens.verify(token, '192.0.2.1', 5000, randomBytes(20), t0 + 1000), undefined, 'another connection id');
    assert.equal(tokens.verify(token, '192.0.2.1', 5000, scid, t0 + 10_001), undefined, 'expired');
    assert.equal(new RetryTokens(10_000).verify(token, '192.0.2.1', 5000, scid, t0 + 1000), undefined, 'another listener');
    const tampered = Buffer.from(token);
    tampered[9]! ^= 1;
    assert.equal(tokens.verify(tampered, '192.0.2.1', 5000, scid, t0 + 1000), undefined, 'tampered');
    assert.equal(tokens.verify(token.subarray(0, 20), '192.0.2.1', 5000, scid, t0 + 1000), undefined, 'truncated');
  });

  it('a peer that vanishes without a word: the idle timeout aborts every stream on both ends', async () => {
    const acc = acceptor();
    const t = transport({ idleTimeoutMs: 1000, keepAliveMs: 200 });
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, acc.onStream);
    const relay = await udpRelay(l.address);
    const conn = await t.dial(relay.address);
    const a = await conn.openStream();
    const b = await conn.openStream();
    await until(() => acc.streams.length === 2);
    const clientErrors = [errorsOf(a), errorsOf(b)];
    const serverErrors = acc.streams.map(errorsOf);
    // keep-alive keeps an idle connection up well past the idle timeout
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(a.state, 'open');
    a.write(Buffer.from('still here'));
    relay.blackhole();
    await Promise.all([a.closed, b.closed, ...acc.streams.map((s) => s.closed), conn.closed]);
    for (const errs of [...clientErrors, ...serverErrors]) {
      assert.equal(errs.length, 1);
      assert.ok(errs[0] instanceof SmartcopyError);
      assert.equal(errs[0].code, 'SC_ERR_TIMEOUT');
      assert.match(errs[0].message, /^QUIC connection to .* timed out: nothing heard from it for 1 s$/);
    }
    await assert.rejects(conn.openStream(), ConnectionClosedError);
    await until(() => l.stats.connections === 0);
    await relay.close();
    await l.close();
  });

  it('lost datagrams (5% each way) are recovered: bytes arrive intact in both directions', async () => {
    const acc = acceptor();
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, acc.onStream);
    const relay = await udpRelay(l.address, 0.05);
    const conn = await transport().dial(relay.address);
    const c = await conn.openStream();
    await until(() => acc.streams.length === 1);
    const s = acc.streams[0]!;
    const up = randomBytes(3 * MiB);
    const down = randomBytes(2 * MiB + 7);
    const atServer = sink(s);
    const atClient = sink(c);
    await Promise.all([writeAll(c, [up]), writeAll(s, [down])]);
    await Promise.all([c.end(), s.end()]);
    assert.equal((await atServer.result).sha256, sha256(up));
    assert.equal((await atClient.result).sha256, sha256(down));
    assert.ok(relay.dropped > 50, `dropped ${relay.dropped}`);
    assert.ok(conn.stats().packetsLost > 0);
    await conn.close();
    await relay.close();
    await l.close({ abortStreams: true });
  });

  it('the server port closing under a connection (ICMP unreachable) fails it at once', async () => {
    const acc = acceptor();
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, acc.onStream);
    const relay = await udpRelay(l.address);
    const conn = await transport().dial(relay.address);
    const c = await conn.openStream();
    await until(() => acc.streams.length === 1);
    const errors = errorsOf(c);
    await relay.close();
    c.write(Buffer.from('anyone?'));
    await c.closed;
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof SmartcopyError);
    assert.equal(errors[0].code, 'SC_ERR_CONNECTION_CLOSED');
    assert.match(errors[0].message, /ECONNREFUSED/);
    await conn.closed;
    await l.close({ abortStreams: true });
  });

  it('dial: refused port → SC_ERR_CONNECT; silence → SC_ERR_TIMEOUT; signal → SC_ERR_ABORTED', async () => {
    const l = await transport().listen({ host: '127.0.0.1', port: 0 }, () => {});
    const address = l.address;
    await l.close();
    await assert.rejects(transport().dial(address), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_CONNECT');
      assert.match(e.message, /^cannot connect to 127\.0\.0\.1:\d+: connection refused .*\(ECONNREFUSED\)$/);
      return true;
    });
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
    const quiet = `127.0.0.1:${silent.address().port}`;
    await assert.rejects(transport({ connectTimeoutMs: 200 }).dial(quiet), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_TIMEOUT');
      assert.match(e.message, /^cannot connect to 127\.0\.0\.1:\d+: no QUIC answer within 0\.2 s/);
      return true;
    });
    const ac = new AbortController();
    const dialing = transport().dial(quiet, { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(dialing, { code: 'SC_ERR_ABORTED' });
    await assert.rejects(transport().dial(quiet, { signal: AbortSignal.abort() }), { code: 'SC_ERR_ABORTED' });
    await assert.rejects(transport().dial(quiet, { timeoutMs: 150 }), { code: 'SC_ERR_TIMEOUT' });
    silent.close();
    // the limit covers name resolution too
    const hanging = transport({ lookup: () => new Promise(() => {}), connectTimeoutMs: 100 });
    await assert.rejects(hanging.dial('agent.invalid:4433'), { code: 'SC_ERR_TIMEOUT' });
    await assert.rejects(hanging.dial('agent.invalid:4433', { signal: AbortSignal.timeout(20), timeoutMs: 5000 }), { code: 'SC_ERR_TIMEOUT' });
    const ac2 = new AbortController();
    const resolving = hanging.dial('agent.invalid:4433', { signal: ac2.signal });
    ac2.abort();
    await assert.rejects(resolving, { code: 'SC_ERR_ABORTED' });
  });

  it('listener close() stops accepting but lets open connections finish; {abortStreams} aborts them', async () => {
    const acc = acceptor();
    const t = transport({ connectTimeoutMs: 300 });
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, acc.onStream);
    const conn = await t.dial(l.address);
    const c = await conn.openStream();
    await until(() => acc.streams.length === 1);
    await l.close();
    await assert.rejects(t.dial(l.address), { code: 'SC_ERR_TIMEOUT' });
    // the open connection still works, and new streams on it too
    const s = acc.streams[0]!;
    const got = sink(s, { keep: true });
    c.write(Buffer.from('after close'));
    await c.end();
    assert.equal((await got.result).data!.toString(), 'after close');
    const c2 = await conn.openStream();
    await until(() => acc.streams.length === 2);
    const clientErrors = errorsOf(c2);
    const serverErrors = errorsOf(acc.streams[1]!);
    await l.close({ abortStreams: true });
    await Promise.all([c2.closed, acc.streams[1]!.closed, conn.closed]);
    assert.equal(c2.state, 'aborted');
    assert.ok(serverErrors[0] instanceof SmartcopyError);
    assert.equal(serverErrors[0].code, 'SC_ERR_ABORTED');
    assert.ok(clientErrors[0] instanceof ConnectionClosedError);
    assert.match(clientErrors[0].message, /^QUIC connection closed by 127\.0\.0\.1:\d+ \(SC_ERR_ABORTED: QUIC listener .* closed\)$/);
    await assert.rejects(conn.openStream(), ConnectionClosedError);
  });

  it('many streams at once: opens beyond the peer’s stream limit wait for credit', async () => {
    const t = transport({ maxStreams: 8 });
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, (s) => {
      // echo
      s.setReader({ data: (chunk) => void s.write(chunk), end: () => void s.end(), error() {} });
    });
    const conn = await t.dial(l.address);
    const n = 100;
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const c = await conn.openStream();
        const data = randomBytes(16 * 1024 + i);
        const got = sink(c);
        c.write(data);
        await c.end();
        const r = await got.result;
        assert.equal(r.sha256, sha256(data), `stream ${i}`);
        await c.closed;
      }),
    );
    assert.equal(l.stats.connections, 1);
    await conn.close();
    await until(() => l.stats.connections === 0);
    await l.close();
  });

  it('an aborted stream tells the peer its error code; the connection carries on', async () => {
    const acc = acceptor();
    const t = transport();
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, acc.onStream);
    const conn = await t.dial(l.address);
    const c = await conn.openStream();
    await until(() => acc.streams.length === 1);
    const errors = errorsOf(acc.streams[0]!);
    c.abort(new SmartcopyError('SC_ERR_NO_SPACE', 'disk full'));
    await acc.streams[0]!.closed;
    assert.ok(errors[0] instanceof ConnectionClosedError);
    assert.match(errors[0].message, /^QUIC stream 0 was reset by 127\.0\.0\.1:\d+ \(SC_ERR_NO_SPACE\)$/);
    const c2 = await conn.openStream();
    await until(() => acc.streams.length === 2);
    const got = sink(acc.streams[1]!, { keep: true });
    c2.write(Buffer.from('next'));
    await c2.end();
    assert.equal((await got.result).data!.toString(), 'next');
    sink(c2);
    await acc.streams[1]!.end();
    await conn.close();
    await l.close();
  });

  it('close() right after end(): the last FIN still reaches the peer before CONNECTION_CLOSE', async () => {
    const t = transport();
    const serverSide: { stream?: Stream; ended: boolean; errors: Error[] } = { ended: false, errors: [] };
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, (s) => {
      serverSide.stream = s;
      s.setReader({ data() {}, end: () => void (serverSide.ended = true), error: (e) => void serverSide.errors.push(e) });
      s.write(randomBytes(2 * MiB));
      void s.end();
    });
    for (let i = 0; i < 5; i++) {
      serverSide.ended = false;
      const conn = await t.dial(l.address);
      const c = await conn.openStream();
      await sink(c).result;
      // the FIN is only queued when end() resolves; close() must not outrun it
      void c.end();
      await conn.close();
      await serverSide.stream!.closed;
      assert.deepEqual(serverSide.errors, []);
      assert.equal(serverSide.ended, true);
      assert.equal(serverSide.stream!.state, 'closed');
    }
    await l.close();
  });

  it('close() ends the streams, then the connection, and the listener forgets it', async () => {
    const acc = acceptor();
    const t = transport();
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, (s) => {
      acc.onStream(s);
      s.setReader({ data() {}, end: () => void s.end(), error() {} });
    });
    const conn = await t.dial(l.address);
    const c = await conn.openStream();
    sink(c);
    await until(() => acc.streams.length === 1);
    await conn.close();
    assert.equal(c.state, 'closed');
    await acc.streams[0]!.closed;
    assert.equal(acc.streams[0]!.state, 'closed');
    await until(() => l.stats.connections === 0);
    await assert.rejects(conn.openStream(), ConnectionClosedError);
    await l.close();
  });
});

describe('quic certificates', () => {
  it('loadOrCreateCertificate makes a key pair once (0600 files in a 0700 directory) and reuses it', async () => {
    await withTempDir(async (tmp) => {
      const dir = path.join(tmp, 'home', '.smartcopy');
      const [a, b] = await Promise.all([loadOrCreateCertificate(dir), loadOrCreateCertificate(dir)]);
      assert.equal(a.fingerprint, b.fingerprint, 'concurrent first calls agree on one identity');
      assert.equal((await fs.stat(dir)).mode & 0o777, 0o700);
      assert.equal((await fs.stat(path.join(dir, 'quic-key.pem'))).mode & 0o777, 0o600);
      assert.equal((await fs.stat(path.join(dir, 'quic-cert.pem'))).mode & 0o777, 0o600);
      const again = await loadOrCreateCertificate(dir);
      assert.equal(again.fingerprint, a.fingerprint);
      assert.equal(again.certPem, a.certPem);
      assert.match(a.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
      // the certificate serves: a client pinning the fingerprint connects
      const l = await quicTransport({ certPem: a.certPem, keyPem: a.keyPem }).listen({ host: '127.0.0.1', port: 0 }, () => {});
      const conn = await quicTransport({ verifyPeer: pinFingerprint(a.fingerprint) }).dial(l.address);
      await conn.close();
      await l.close();
      await fs.rm(path.join(dir, 'quic-cert.pem'));
      await assert.rejects(loadOrCreateCertificate(dir), (e: unknown) => {
        assert.ok(e instanceof SmartcopyError);
        assert.equal(e.code, 'SC_ERR_USAGE');
        assert.match(e.message, /quic-cert\.pem is missing/);
        return true;
      });
    });
  });

  it('fingerprints: SHA256:base64 of the DER; hex input is accepted', () => {
    const x = new X509Certificate(server.cert);
    const hex = x.fingerprint256; // "AB:CD:..."
    assert.equal(fingerprint, `SHA256:${Buffer.from(hex.replace(/:/g, ''), 'hex').toString('base64').replace(/=+$/, '')}`);
    assert.equal(certificateFingerprint(x.raw), fingerprint);
    assert.equal(normalizeFingerprint(hex), fingerprint);
    assert.equal(normalizeFingerprint(hex.replace(/:/g, '').toLowerCase()), fingerprint);
    assert.equal(normalizeFingerprint(`${fingerprint}=`), fingerprint);
    assert.equal(normalizeFingerprint(fingerprint.replace('SHA256', 'sha256')), fingerprint);
    assert.throws(() => normalizeFingerprint('SHA256:short'), { code: 'SC_ERR_USAGE' });
    assert.throws(() => certificateFingerprint('not a certificate'), { code: 'SC_ERR_USAGE' });
  });
});

after(async () => {
  // every socket and timer the tests opened is gone (closing a socket takes a turn or two)
  const leftovers = (): string[] => process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap' || r === 'Timeout');
  for (let i = 0; i < 100 && leftovers().length > 0; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(leftovers(), [], 'sockets or timers left open');
});
