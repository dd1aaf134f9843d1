/**
 * The compliance suite every transport must pass. A transport's test file calls
 * `runTransportCompliance(name, factory)`; the factory builds a fresh harness per test case, and
 * `open()` returns the two ends of one new stream, already paired. `transportHarness()` builds
 * such a factory from any `Transport` (listen, dial, pair accepted streams in order).
 *
 * Other packages import this file from `transports/dist/test/compliance.js`.
 */
import assert from 'node:assert/strict';
import { createHash, randomFillSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { STREAM_MAX_BUFFERED } from '../src/types.js';
import type { ListenOptions, Stream, Transport } from '../src/types.js';

export interface StreamPairHarness {
  /** open one stream: [the dialer's end, the listener's end] */
  open(): Promise<[client: Stream, server: Stream]>;
  /** release everything the harness opened (streams still open are aborted) */
  teardown(): Promise<void>;
}

export type HarnessFactory = () => Promise<StreamPairHarness>;

export interface ComplianceOptions {
  /** size of the single big write (default 32 MiB) */
  bigWriteBytes?: number;
  /** streams opened at once on one connection (default 16) */
  concurrentStreams?: number;
  /** per-case guard against hangs, not a speed assertion (default 60 s) */
  timeoutMs?: number;
  /**
   * a writer must be stopped before it has written this much into a paused stream (default
   * 256 MiB: our own buffers are bounded by the high-water mark, but a host tuned for high
   * bandwidth-delay products may give a socket tens of MiB of kernel buffers)
   */
  pausedWriteLimit?: number;
}

const MiB = 1024 * 1024;

/** A harness over a real Transport: listen, dial the listener, pair streams in accept order. */
export function transportHarness(transport: Transport, listenOptions: ListenOptions | (() => ListenOptions)): HarnessFactory {
  return async () => {
    const every = new Set<Stream>();
    const accepted: Stream[] = [];
    let waiting: ((s: Stream) => void) | undefined;
    const opts = typeof listenOptions === 'function' ? listenOptions() : listenOptions;
    const listener = await transport.listen(opts, (s) => {
      every.add(s);
      if (waiting !== undefined) {
        const w = waiting;
        waiting = undefined;
        w(s);
      } else accepted.push(s);
    });
    const conn = await transport.dial(listener.address);
    const nextAccepted = (): Promise<Stream> =>
      accepted.length > 0 ? Promise.resolve(accepted.shift()!) : new Promise<Stream>((r) => (waiting = r));
    // opens are serialized so that the n-th dialed stream is the n-th accepted one
    let chain: Promise<unknown> = Promise.resolve();
    return {
      open() {
        const p = chain.then(async (): Promise<[Stream, Stream]> => {
          const c = await conn.openStream();
          every.add(c);
          return [c, await nextAccepted()];
        });
        chain = p.catch(() => undefined);
        return p;
      },
      async teardown() {
        for (const s of every) s.abort();
        conn.abort();
        await listener.close({ abortStreams: true });
        await Promise.all([...every].map((s) => s.closed));
        await conn.closed;
      },
    };
  };
}

// ---- helpers (exported for transport-specific tests) -------------------------------------

export function randomBytes(n: number): Buffer {
  return randomFillSync(Buffer.allocUnsafe(n));
}

export function sha256(...parts: Uint8Array[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Resolve once `pred()` holds, checking after each event-loop turn (the test timeout bounds it). */
export async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise<void>((r) => setImmediate(r));
}

/** Resolve with 'timeout' if `p` has not settled after `ms` (used to detect a stalled writer). */
async function settlesWithin<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

export interface Sink {
  /** bytes delivered to the reader so far */
  readonly received: number;
  /** resolves at end() with what was read; rejects on error() */
  readonly result: Promise<{ bytes: number; sha256: string; data: Buffer | undefined }>;
}

/** Install a reader that hashes (and with keep, keeps) everything until end. */
export function sink(stream: Stream, opts: { keep?: boolean; onData?: (chunk: Buffer) => void } = {}): Sink {
  const hash = createHash('sha256');
  const kept: Buffer[] = [];
  let received = 0;
  const result = new Promise<{ bytes: number; sha256: string; data: Buffer | undefined }>((resolve, reject) => {
    stream.setReader({
      data(chunk) {
        received += chunk.byteLength;
        hash.update(chunk);
        if (opts.keep) kept.push(chunk);
        opts.onData?.(chunk);
      },
      end() {
        resolve({ bytes: received, sha256: hash.digest('hex'), data: opts.keep ? Buffer.concat(kept) : undefined });
      },
      error: reject,
    });
  });
  // a test that only cares about delivery may ignore the result; an error must not go unhandled
  result.catch(() => undefined);
  return {
    get received() {
      return received;
    },
    result,
  };
}

/** Write every chunk, honouring backpressure; returns the bytes written. */
export async function writeAll(stream: Stream, chunks: Iterable<Uint8Array>): Promise<number> {
  let bytes = 0;
  for (const c of chunks) {
    bytes += c.byteLength;
    if (!stream.write(c)) await stream.drain();
  }
  return bytes;
}

export function* slices(buf: Buffer, size: number): Generator<Buffer> {
  for (let off = 0; off < buf.length; off += size) yield buf.subarray(off, off + size);
}

function isClosedError(e: unknown): boolean {
  return e instanceof ConnectionClosedError && e.code === 'SC_ERR_CONNECTION_CLOSED';
}

// ---- the suite ---------------------------------------------------------------------------

export function runTransportCompliance(name: string, factory: HarnessFactory, options: ComplianceOptions = {}): void {
  const bigBytes = options.bigWriteBytes ?? 32 * MiB;
  const concurrent = options.concurrentStreams ?? 16;
  const timeout = options.timeoutMs ?? 60_000;
  const pausedWriteLimit = options.pausedWriteLimit ?? 4 * STREAM_MAX_BUFFERED;

  const test = (title: string, fn: (h: StreamPairHarness) => Promise<void>): void => {
    it(title, { timeout }, async () => {
      const h = await factory();
      try {
        await fn(h);
      } finally {
        await h.teardown();
      }
    });
  };

  describe(`transport compliance: ${name}`, () => {
    test('one big write arrives complete and in order', async (h) => {
      const [c, s] = await h.open();
      const data = randomBytes(bigBytes);
      const got = sink(s);
      const cbs: (Error | null | undefined)[] = [];
      c.write(data, (err) => cbs.push(err));
      await c.end();
      const r = await got.result;
      assert.equal(r.bytes, bigBytes);
      assert.equal(r.sha256, sha256(data));
      assert.deepEqual(cbs, [null], 'the write callback runs exactly once, without error');
      assert.equal(c.bytesWritten, bigBytes);
      assert.equal(s.bytesRead, bigBytes);
      sink(c);
      await s.end();
      await Promise.all([c.closed, s.closed]);
      assert.equal(c.state, 'closed');
      assert.equal(s.state, 'closed');
    });

    test('many small writes arrive in order, callbacks in order', async (h) => {
      const [c, s] = await h.open();
      const src = randomBytes(10_000 * 100);
      const got = sink(s, { keep: true });
      const order: number[] = [];
      let off = 0;
      let seed = 12345;
      for (let i = 0; i < 10_000; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const len = 1 + (seed % 100);
        const n = i;
        if (!c.write(src.subarray(off, off + len), () => order.push(n))) await c.drain();
        off += len;
      }
      await c.end();
      const r = await got.result;
      assert.equal(r.bytes, off);
      assert.ok(r.data!.equals(src.subarray(0, off)), 'bytes arrive in write order');
      assert.equal(order.length, 10_000);
      assert.ok(order.every((v, i) => v === i), 'write callbacks run in write order');
      sink(c);
      await s.close();
      await c.close();
    });

    test('backpressure: a paused reader stops the writer; nothing is lost after resume', async (h) => {
      const [c, s] = await h.open();
      const got = sink(s);
      s.pause();
      const src = randomBytes(8 * MiB);
      const chunk = MiB;
      const sent = createHash('sha256');
      let i = 0;
      let written = 0;
      const next = (): Buffer => {
        const off = (i++ * 524_287) % (src.length - chunk);
        const b = src.subarray(off, off + chunk);
        sent.update(b);
        written += b.length;
        return b;
      };
      let sawFalse = false;
      let stalled = false;
      while (written < pausedWriteLimit) {
        if (!c.write(next())) {
          sawFalse = true;
          if ((await settlesWithin(c.drain(), 250)) === 'timeout') {
            stalled = true;
            break;
          }
        }
      }
      assert.ok(sawFalse, 'write() returned false');
      assert.ok(stalled, `memory is not bounded: the writer wrote ${written} bytes into a paused stream`);
      assert.equal(got.received, 0, 'nothing is delivered to a paused reader');
      assert.equal(s.state, 'open');
      s.resume();
      await c.drain();
      for (let k = 0; k < 8; k++) if (!c.write(next())) await c.drain();
      await c.end();
      const r = await got.result;
      assert.equal(r.bytes, written);
      assert.equal(r.sha256, sent.digest('hex'));
      sink(c);
      await s.close();
      await c.closed;
    });

    test('pause() holds delivery until resume()', async (h) => {
      const [c, s] = await h.open();
      const got = sink(s, { keep: true });
      s.pause();
      const data = randomBytes(3000);
      c.write(data);
      for (let k = 0; k < 20; k++) await new Promise<void>((r) => setImmediate(r));
      await new Promise<void>((r) => setTimeout(r, 20));
      assert.equal(got.received, 0);
      s.resume();
      await until(() => got.received === data.length);
      await c.end();
      assert.ok((await got.result).data!.equals(data));
      sink(c);
      await s.close();
      await c.closed;
    });

    test('chunks that arrive before setReader are delivered first, in order', async (h) => {
      const [c, s] = await h.open();
      const data = randomBytes(256 * 1024);
      await writeAll(c, slices(data, 10_000));
      await c.end();
      // s has not ended, so 'closing' means its peer's end (after all data) has arrived
      await until(() => s.state === 'closing');
      const got = sink(s, { keep: true });
      const r = await got.result;
      assert.ok(r.data!.equals(data));
      sink(c);
      await s.end();
      await Promise.all([c.closed, s.closed]);
    });

    test('half-close: end() reaches the peer, which can still answer', async (h) => {
      const [c, s] = await h.open();
      const fromClient = sink(s, { keep: true });
      const fromServer = sink(c, { keep: true });
      c.write(Buffer.from('ping'));
      await c.end();
      assert.equal(c.state, 'closing');
      assert.equal((await fromClient.result).data!.toString(), 'ping');
      assert.equal(s.state, 'closing');
      s.write(Buffer.from('pong'));
      await s.end();
      assert.equal((await fromServer.result).data!.toString(), 'pong');
      await Promise.all([c.closed, s.closed]);
      assert.equal(c.state, 'closed');
      assert.equal(s.state, 'closed');
    });

    test('close() while the peer writes: no crash, the writer completes or sees ConnectionClosedError', async (h) => {
      const [c, s] = await h.open();
      let firstData!: () => void;
      const gotData = new Promise<void>((r) => (firstData = r));
      const got = sink(c, { onData: () => firstData() });
      let serverSawEnd = false;
      s.setReader({ data() {}, end: () => void (serverSawEnd = true), error() {} });
      const block = randomBytes(MiB);
      const writer = (async (): Promise<unknown> => {
        try {
          for (let k = 0; k < 16; k++) if (!s.write(block)) await s.drain();
          await s.end();
          return undefined;
        } catch (err) {
          return err;
        }
      })();
      await gotData;
      const closing = c.close();
      const writeErr = await writer;
      if (writeErr !== undefined) assert.ok(isClosedError(writeErr), `writer got ${String(writeErr)}`);
      await Promise.all([c.closed, s.closed]);
      const [closeResult] = await Promise.allSettled([closing]);
      if (writeErr === undefined) {
        assert.equal(closeResult.status, 'fulfilled');
        assert.ok(serverSawEnd);
        assert.equal((await got.result).bytes, 16 * MiB);
      } else if (closeResult.status === 'rejected') {
        assert.ok(closeResult.reason instanceof SmartcopyError);
      }
    });

    test('abort by the reading side: both readers see error(), pending writes fail, closed settles', async (h) => {
      const [c, s] = await h.open();
      const abortErr = new SmartcopyError('SC_ERR_IO', 'compliance: reader aborts mid-transfer');
      const serverErrors: Error[] = [];
      const clientErrors: Error[] = [];
      let gotData!: () => void;
      const arrived = new Promise<void>((r) => (gotData = r));
      let serverEnded = false;
      s.setReader({ data: () => gotData(), end: () => void (serverEnded = true), error: (e) => void serverErrors.push(e) });
      c.setReader({ data() {}, end() {}, error: (e) => void clientErrors.push(e) });
      const block = randomBytes(MiB);
      const n = 64;
      const results: (Error | null | undefined)[] = [];
      // deliberately ignore backpressure so that writes are still pending at the abort
      for (let k = 0; k < n; k++) c.write(block, (err) => results.push(err));
      await arrived;
      s.abort(abortErr);
      s.abort(new Error('a second abort is ignored'));
      await Promise.all([s.closed, c.closed]);
      await until(() => results.length === n && clientErrors.length > 0 && serverErrors.length > 0);
      assert.deepEqual(serverErrors, [abortErr]);
      assert.equal(serverEnded, false);
      assert.equal(clientErrors.length, 1);
      assert.ok(clientErrors[0] instanceof SmartcopyError, `client reader got ${String(clientErrors[0])}`);
      assert.ok(results.some((e) => e instanceof Error), 'pending write callbacks get an error');
      assert.equal(s.state, 'aborted');
      assert.equal(c.state, 'aborted');
      assert.throws(() => c.write(block), isClosedError);
      await assert.rejects(c.end());
    });

    test('abort by the writing side fails its own pending writes with the abort error', async (h) => {
      const [c, s] = await h.open();
      const serverErrors: Error[] = [];
      s.setReader({ data() {}, end() {}, error: (e) => void serverErrors.push(e) });
      s.pause();
      const block = randomBytes(MiB);
      const results: (Error | null | undefined)[] = [];
      for (let k = 0; k < 32; k++) c.write(block, (err) => results.push(err));
      const ending = c.end();
      const abortErr = new SmartcopyError('SC_ERR_INTERRUPTED', 'compliance: writer aborts');
      c.abort(abortErr);
      await Promise.all([s.closed, c.closed]);
      await until(() => results.length === 32 && serverErrors.length > 0);
      assert.ok(results.includes(abortErr), 'queued writes fail with the abort error');
      assert.equal(await ending.then(() => 'resolved', (e: unknown) => e), abortErr);
      assert.equal(serverErrors.length, 1);
      assert.ok(serverErrors[0] instanceof SmartcopyError);
    });

    test('write after end/close/abort throws ConnectionClosedError; lifecycle verbs are idempotent', async (h) => {
      const [c, s] = await h.open();
      sink(s);
      sink(c);
      const ending = c.end();
      assert.equal(c.end(), ending, 'end() returns the same promise');
      assert.throws(() => c.write(Buffer.from('late')), isClosedError);
      await ending;
      const closing = s.close();
      assert.equal(s.close(), closing);
      await closing;
      await c.close();
      assert.equal(c.state, 'closed');
      assert.throws(() => s.write(Buffer.from('late')), isClosedError);
      c.abort();
      assert.equal(c.state, 'closed', 'abort() after a clean close does nothing');

      const [c2, s2] = await h.open();
      const errs: Error[] = [];
      s2.setReader({ data() {}, end() {}, error: (e) => void errs.push(e) });
      c2.abort();
      c2.abort();
      assert.throws(() => c2.write(Buffer.from('late')), isClosedError);
      await assert.rejects(c2.drain(), isClosedError);
      await Promise.all([c2.closed, s2.closed]);
      await until(() => errs.length > 0);
      assert.equal(s2.state, 'aborted');
      assert.throws(() => s2.write(Buffer.from('late')), isClosedError);
    });

    test(`${concurrent} concurrent streams on one connection`, async (h) => {
      const pairs = await Promise.all(Array.from({ length: concurrent }, () => h.open()));
      await Promise.all(
        pairs.map(async ([c, s], i) => {
          const up = randomBytes(MiB + i * 4099);
          const down = randomBytes(MiB / 2 + i * 1031);
          const atServer = sink(s);
          const atClient = sink(c);
          await Promise.all([writeAll(c, slices(up, 64 * 1024)), writeAll(s, slices(down, 48 * 1024))]);
          await Promise.all([c.end(), s.end()]);
          const [u, d] = await Promise.all([atServer.result, atClient.result]);
          assert.equal(u.sha256, sha256(up), `stream ${i} upstream`);
          assert.equal(d.sha256, sha256(down), `stream ${i} downstream`);
          await Promise.all([c.closed, s.closed]);
        }),
      );
    });
  });
}
