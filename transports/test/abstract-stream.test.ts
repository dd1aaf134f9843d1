import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { AbstractStream } from '../src/index.js';
import type { WriteCallback } from '../src/index.js';
import { sink, until } from './compliance.js';

/** A transport that records what the base hands it and lets the test play the peer. */
class FakeStream extends AbstractStream {
  sent: Buffer[] = [];
  sendCalls = 0;
  pending: WriteCallback[] = [];
  ready = true;
  events: string[] = [];
  autoComplete = true;

  protected override sendData(chunks: readonly Uint8Array[], done: WriteCallback): boolean {
    this.sendCalls++;
    for (const c of chunks) this.sent.push(Buffer.from(c));
    if (this.autoComplete) queueMicrotask(() => done());
    else this.pending.push(done);
    return this.ready;
  }
  protected override sendEnd(): void {
    this.events.push('end');
  }
  protected override sendAbort(err: Error): void {
    this.events.push(`abort:${err.message}`);
  }
  protected override sendPause(): void {
    this.events.push('pause');
  }
  protected override sendResume(): void {
    this.events.push('resume');
  }
  protected override sendClose(): void {
    this.events.push('close');
  }
  incoming(chunk: Buffer): void {
    this.pushIncoming(chunk);
  }
  peerEnded(): void {
    this.remoteEnded();
  }
  peerAborted(err: Error): void {
    this.remoteAborted(err);
  }
  writable(): void {
    this.notifyWritable();
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('AbstractStream', () => {
  it('coalesces the writes of one tick into one sendData call, in order', async () => {
    const s = new FakeStream({ id: 't' });
    s.write(Buffer.from('head'));
    s.write([Buffer.from('pay'), Buffer.from('load')]);
    await tick();
    assert.equal(s.sendCalls, 1);
    assert.equal(Buffer.concat(s.sent).toString(), 'headpayload');
    assert.equal(s.bytesWritten, 11);
  });

  it('write() returns false at the high-water mark; drain() resolves when the transport completes', async () => {
    const s = new FakeStream({ id: 't', highWaterMark: 10 });
    s.autoComplete = false;
    assert.equal(s.write(Buffer.alloc(6)), true);
    assert.equal(s.write(Buffer.alloc(6)), false);
    assert.equal(s.writeBufferedBytes, 12);
    let drained = false;
    const d = s.drain().then(() => (drained = true));
    await tick();
    assert.equal(drained, false);
    s.pending.shift()!();
    await d;
    assert.equal(s.writeBufferedBytes, 0);
    await s.drain();
  });

  it('holds data while the transport is not ready, then flushes on notifyWritable()', async () => {
    const s = new FakeStream({ id: 't' });
    s.ready = false;
    s.write(Buffer.from('a'));
    await tick();
    s.write(Buffer.from('b'));
    s.write(Buffer.from('c'));
    await tick();
    assert.equal(s.sendCalls, 1);
    s.writable();
    assert.equal(s.sendCalls, 2);
    assert.equal(Buffer.concat(s.sent).toString(), 'abc');
  });

  it('end() is sent after all data and resolves once the transport has it all', async () => {
    const s = new FakeStream({ id: 't' });
    s.autoComplete = false;
    s.write(Buffer.from('x'));
    let ended = false;
    const e = s.end().then(() => (ended = true));
    await tick();
    assert.deepEqual(s.events, ['end']);
    assert.equal(ended, false);
    s.pending.shift()!();
    await e;
    assert.equal(s.state, 'closing');
    s.peerEnded();
    assert.equal(s.state, 'closed');
    assert.deepEqual(s.events, ['end', 'close']);
    await s.closed;
  });

  it('delivers chunks that arrived before setReader first, then end', async () => {
    const s = new FakeStream({ id: 't' });
    s.incoming(Buffer.from('one'));
    s.incoming(Buffer.from('two'));
    s.peerEnded();
    assert.equal(s.readBufferedBytes, 6);
    const got = sink(s, { keep: true });
    s.incoming(Buffer.from('late')); // after the peer's end: ignored
    assert.equal((await got.result).data!.toString(), 'onetwo');
  });

  it('pause() buffers and calls sendPause; resume() delivers in order', async () => {
    const s = new FakeStream({ id: 't' });
    const got = sink(s, { keep: true });
    s.incoming(Buffer.from('a'));
    s.pause();
    s.incoming(Buffer.from('b'));
    s.incoming(Buffer.from('c'));
    await tick();
    assert.equal(got.received, 1);
    s.resume();
    s.incoming(Buffer.from('d'));
    s.peerEnded();
    assert.equal((await got.result).data!.toString(), 'abcd');
    assert.deepEqual(s.events, ['pause', 'resume']);
  });

  it('a reader may pause() from inside data(): delivery stops right there', async () => {
    const s = new FakeStream({ id: 't' });
    for (const c of ['1', '2', '3']) s.incoming(Buffer.from(c));
    const seen: string[] = [];
    s.setReader({
      data: (c) => {
        seen.push(c.toString());
        s.pause();
      },
      end() {},
      error() {},
    });
    await tick();
    assert.deepEqual(seen, ['1']);
    s.resume();
    await tick();
    assert.deepEqual(seen, ['1', '2']);
  });

  it('aborts with SC_ERR_STREAM_BUFFER when a paused stream buffers more than maxBuffered', async () => {
    const s = new FakeStream({ id: 't', maxBuffered: 100 });
    const errors: Error[] = [];
    s.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
    s.pause();
    s.incoming(Buffer.alloc(60));
    assert.equal(s.state, 'open');
    s.incoming(Buffer.alloc(60));
    assert.equal(s.state, 'aborted');
    await s.closed;
    await until(() => errors.length === 1);
    assert.ok(errors[0] instanceof SmartcopyError);
    assert.equal(errors[0].code, 'SC_ERR_STREAM_BUFFER');
    assert.match(s.events.at(-1)!, /^abort:/);
  });

  it('remote abort fails queued and in-flight writes, rejects end() and drain(), never sends an abort back', async () => {
    const s = new FakeStream({ id: 't', highWaterMark: 4 });
    s.autoComplete = false;
    s.ready = false;
    const results: (Error | null | undefined)[] = [];
    s.write(Buffer.alloc(5), (e) => results.push(e));
    await tick();
    s.write(Buffer.alloc(5), (e) => results.push(e));
    const ending = s.end();
    const draining = s.drain();
    const err = new ConnectionClosedError('peer went away');
    s.peerAborted(err);
    s.pending.shift()!(); // a late completion from the transport is ignored
    await assert.rejects(ending, (e) => e === err);
    await assert.rejects(draining, (e) => e === err);
    await until(() => results.length === 2);
    assert.deepEqual(results, [err, err]);
    assert.equal(s.events.length, 0);
    await assert.rejects(s.close(), (e) => e === err);
  });

  it('a transport write error aborts the stream with that error', async () => {
    const s = new FakeStream({ id: 't' });
    s.autoComplete = false;
    const results: (Error | null | undefined)[] = [];
    s.write(Buffer.alloc(5), (e) => results.push(e));
    await tick();
    const err = new ConnectionClosedError('EPIPE');
    s.pending.shift()!(err);
    assert.equal(s.state, 'aborted');
    assert.deepEqual(results, [err]);
    await s.closed;
  });

  it('a reader that throws aborts the stream instead of corrupting it', async () => {
    const s = new FakeStream({ id: 't' });
    const boom = new Error('reader bug');
    const errors: Error[] = [];
    s.setReader({
      data() {
        throw boom;
      },
      end() {},
      error: (e) => void errors.push(e),
    });
    await tick();
    s.incoming(Buffer.from('x'));
    assert.equal(s.state, 'aborted');
    await until(() => errors.length === 1);
    assert.equal(errors[0], boom);
  });

  it('setReader after an abort reports the error to the new reader', async () => {
    const s = new FakeStream({ id: 't' });
    s.abort();
    const errors: Error[] = [];
    s.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
    await until(() => errors.length === 1);
    assert.equal((errors[0] as SmartcopyError).code, 'SC_ERR_ABORTED');
  });

  it('fire-and-forget end() on a stream that is later aborted does not raise an unhandled rejection', async () => {
    const s = new FakeStream({ id: 't' });
    s.autoComplete = false;
    s.write(Buffer.alloc(1));
    void s.end();
    s.abort();
    await tick();
    await tick();
    assert.equal(s.state, 'aborted');
  });
});
