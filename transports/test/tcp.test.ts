import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { parseHostPort, tcpTransport } from '../src/index.js';
import type { Stream } from '../src/index.js';
import { runTransportCompliance, sink, transportHarness, until } from './compliance.js';

runTransportCompliance('tcp transport (127.0.0.1:0)', transportHarness(tcpTransport(), { host: '127.0.0.1', port: 0 }));

/** a DNS lookup that never answers: the connect stays pending until timeout or abort */
const hangingLookup = (): void => {};

describe('tcp transport', () => {
  it('declares its features', () => {
    assert.deepEqual({ ...tcpTransport().features }, { sameHost: false, multiplexed: false, encrypted: false });
  });

  it('listens on an ephemeral port and reports it', async () => {
    const l = await tcpTransport().listen({ host: '127.0.0.1', port: 0 }, () => {});
    assert.ok(l.port > 0);
    assert.equal(l.address, `127.0.0.1:${l.port}`);
    await l.close();
  });

  it('connection refused → SC_ERR_CONNECT with a one-line hint', async () => {
    const t = tcpTransport();
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, () => {});
    const address = l.address;
    await l.close();
    await assert.rejects(t.dial(address), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_CONNECT');
      assert.equal(e.message, `cannot connect to ${address}: connection refused — is \`smartcopy agent\` running there? (ECONNREFUSED)`);
      return true;
    });
  });

  it('dial aborted by its AbortSignal → SC_ERR_ABORTED', async () => {
    const t = tcpTransport({ lookup: hangingLookup });
    const ac = new AbortController();
    const dialing = t.dial('agent.invalid:9878', { signal: ac.signal });
    ac.abort();
    await assert.rejects(dialing, { code: 'SC_ERR_ABORTED' });
    await assert.rejects(t.dial('agent.invalid:9878', { signal: AbortSignal.abort() }), { code: 'SC_ERR_ABORTED' });
  });

  it('dial timeout → SC_ERR_TIMEOUT', async () => {
    const t = tcpTransport({ lookup: hangingLookup, connectTimeoutMs: 30 });
    await assert.rejects(t.dial('agent.invalid:9878'), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_TIMEOUT');
      assert.match(e.message, /^cannot connect to agent\.invalid:9878: no answer within/);
      return true;
    });
  });

  it('parses addresses', () => {
    assert.deepEqual(parseHostPort('10.0.0.5:9000'), { host: '10.0.0.5', port: 9000 });
    assert.deepEqual(parseHostPort('node1'), { host: 'node1', port: 9878 });
    assert.deepEqual(parseHostPort('[::1]:7'), { host: '::1', port: 7 });
    assert.throws(() => parseHostPort('host:99999'), { code: 'SC_ERR_USAGE' });
    assert.throws(() => parseHostPort('a:b:c'), { code: 'SC_ERR_USAGE' });
  });

  it('each openStream() is a new socket; a peer reset surfaces as ConnectionClosedError with the errno', async () => {
    const t = tcpTransport();
    const accepted: Stream[] = [];
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, (s) => accepted.push(s));
    const conn = await t.dial(l.address);
    const a = await conn.openStream();
    const b = await conn.openStream();
    await until(() => accepted.length === 2);
    assert.notEqual(a.id, b.id);
    const errors: Error[] = [];
    a.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
    accepted[0]!.abort();
    await a.closed;
    await until(() => errors.length === 1);
    assert.ok(errors[0] instanceof ConnectionClosedError);
    assert.match(errors[0].message, /ECONNRESET/);
    const got = sink(accepted[1]!);
    b.write(Buffer.from('still fine'));
    await b.end();
    assert.equal((await got.result).bytes, 10);
    sink(b);
    await accepted[1]!.close();
    await conn.close();
    await l.close();
  });

  it('listener close() stops accepting; {abortStreams} aborts open sockets', async () => {
    const t = tcpTransport();
    const accepted: Stream[] = [];
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, (s) => accepted.push(s));
    const conn = await t.dial(l.address);
    const c = await conn.openStream();
    const errors: Error[] = [];
    c.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
    await until(() => accepted.length === 1);
    await l.close({ abortStreams: true });
    await Promise.all([c.closed, accepted[0]!.closed]);
    assert.equal(c.state, 'aborted');
    await assert.rejects(conn.openStream(), { code: 'SC_ERR_CONNECT' });
    conn.abort();
    await conn.closed;
  });

  it('bytes the agent sends first on the pre-connected socket reach the first stream', async () => {
    const t = tcpTransport();
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, (s) => {
      s.write(Buffer.from('challenge'));
      sink(s);
      void s.end();
    });
    const conn = await t.dial(l.address);
    await new Promise((r) => setTimeout(r, 20));
    const c = await conn.openStream();
    const got = sink(c, { keep: true });
    assert.equal((await got.result).data!.toString(), 'challenge');
    await c.close();
    await conn.close();
    await l.close();
  });

  it('connection close() ends the unused first socket cleanly', async () => {
    const t = tcpTransport();
    const accepted: Stream[] = [];
    const l = await t.listen({ host: '127.0.0.1', port: 0 }, (s) => {
      accepted.push(s);
      s.setReader({ data() {}, end: () => void s.end(), error() {} });
    });
    const conn = await t.dial(l.address);
    await until(() => accepted.length === 1);
    await conn.close();
    await accepted[0]!.closed;
    assert.equal(accepted[0]!.state, 'closed');
    await l.close();
  });
});
