import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { createMemoryPair, memoryTransport } from '../src/index.js';
import type { Stream } from '../src/index.js';
import { runTransportCompliance, sink, transportHarness, until } from './compliance.js';

let seq = 0;
runTransportCompliance('memory transport', transportHarness(memoryTransport(), () => ({ host: `compliance-${++seq}` })));

runTransportCompliance('createMemoryPair', async () => {
  const opened: Stream[] = [];
  return {
    async open() {
      const pair = createMemoryPair();
      opened.push(...pair);
      return pair;
    },
    async teardown() {
      for (const s of opened) s.abort();
      await Promise.all(opened.map((s) => s.closed));
    },
  };
});

describe('memory transport', () => {
  it('declares its features', () => {
    assert.deepEqual({ ...memoryTransport().features }, { sameHost: true, multiplexed: true, encrypted: false });
  });

  it('dialing a name nobody listens on fails with SC_ERR_CONNECT', async () => {
    await assert.rejects(memoryTransport().dial('nobody-here'), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_CONNECT');
      assert.match(e.message, /memory:nobody-here/);
      return true;
    });
  });

  it('a name can be listened on once; close() frees it and later opens fail', async () => {
    const t = memoryTransport();
    const l = await t.listen({ host: 'mem-once' }, () => {});
    await assert.rejects(t.listen({ host: 'mem-once' }, () => {}), { code: 'SC_ERR_CONNECT' });
    const conn = await t.dial('mem-once');
    await l.close();
    await assert.rejects(conn.openStream(), { code: 'SC_ERR_CONNECT' });
    const again = await t.listen({ host: 'mem-once' }, () => {});
    await again.close();
    await conn.close();
  });

  it('listener close({abortStreams}) aborts accepted streams; connection close() refuses new streams', async () => {
    const t = memoryTransport();
    const accepted: Stream[] = [];
    const l = await t.listen({ host: 'mem-abort' }, (s) => accepted.push(s));
    const conn = await t.dial('mem-abort');
    const c = await conn.openStream();
    const errors: Error[] = [];
    c.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
    await until(() => accepted.length === 1);
    await l.close({ abortStreams: true });
    await Promise.all([c.closed, accepted[0]!.closed]);
    await until(() => errors.length === 1);
    assert.ok(errors[0] instanceof ConnectionClosedError);
    await conn.close();
    await assert.rejects(conn.openStream(), (e: unknown) => e instanceof ConnectionClosedError);
  });

  it('copies written bytes once: the writer may reuse its buffer after the callback', async () => {
    const [a, b] = createMemoryPair();
    const got = sink(b, { keep: true });
    const buf = Buffer.alloc(100_000, 1);
    await new Promise<void>((resolve) => a.write(buf, () => resolve()));
    buf.fill(2);
    a.write(buf);
    await a.end();
    const data = (await got.result).data!;
    assert.equal(data.length, 200_000);
    assert.ok(data.subarray(0, 100_000).every((v) => v === 1));
    assert.ok(data.subarray(100_000).every((v) => v === 2));
    a.abort();
    b.abort();
  });

  it('write() turns false above the high-water mark until the peer reads', async () => {
    const [a, b] = createMemoryPair({ highWaterMark: 1000 });
    assert.equal(a.write(Buffer.alloc(600)), true);
    assert.equal(a.write(Buffer.alloc(600)), false);
    let drained = false;
    const d = a.drain().then(() => (drained = true));
    for (let k = 0; k < 10; k++) await new Promise<void>((r) => setImmediate(r));
    assert.equal(drained, false, 'no reader yet: the bytes are unread');
    sink(b);
    await d;
    a.abort();
  });
});
