import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LZ4_MAX_RAW_LENGTH, ProtocolError, lz4Compress, lz4Decompress, shouldSendCompressed } from '../src/index.js';
import { randomBytes, rng } from './helpers/samples.js';

const malformed = (e: unknown): boolean => e instanceof ProtocolError && e.code === 'SC_ERR_MALFORMED_FRAME';

function text(n: number): Buffer {
  const words = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu'.split(' ');
  const next = rng(3);
  let s = '';
  while (s.length < n) s += words[(next() * words.length) | 0] + ' ';
  return Buffer.from(s.slice(0, n));
}

describe('lz4', () => {
  it('round-trips text, random and empty buffers', async () => {
    for (const raw of [text(1 << 20), randomBytes(rng(1), 70_000), Buffer.alloc(0), Buffer.from('x')]) {
      const c = await lz4Compress(raw);
      const back = await lz4Decompress(c, raw.length);
      assert.ok(back.equals(raw));
    }
  });

  it('compresses text well enough to be worth sending and random data not', async () => {
    const t = text(1 << 20);
    assert.ok(shouldSendCompressed(t, await lz4Compress(t)));
    const r = randomBytes(rng(2), 1 << 16);
    assert.ok(!shouldSendCompressed(r, await lz4Compress(r)));
  });

  it('shouldSendCompressed draws the line at 90%', () => {
    assert.ok(shouldSendCompressed(100, 90));
    assert.ok(!shouldSendCompressed(100, 91));
    assert.ok(!shouldSendCompressed(0, 0));
  });

  it('rejects a raw length that disagrees with the payload, before decompressing', async () => {
    const raw = text(10_000);
    const c = await lz4Compress(raw);
    await assert.rejects(lz4Decompress(c, raw.length - 1), malformed);
    await assert.rejects(lz4Decompress(c, raw.length + 1), malformed);
    await assert.rejects(lz4Decompress(c, LZ4_MAX_RAW_LENGTH + 1), malformed);
    await assert.rejects(lz4Decompress(c, -1), malformed);
  });

  it('rejects corrupt or truncated payloads', async () => {
    const raw = text(10_000);
    const c = await lz4Compress(raw);
    await assert.rejects(lz4Decompress(c.subarray(0, 3), raw.length), malformed);
    await assert.rejects(lz4Decompress(c.subarray(0, c.length - 10), raw.length), malformed);
    const lying = Buffer.from(c);
    lying.writeUInt32LE(100, 0);
    await assert.rejects(lz4Decompress(lying, 100), malformed);
  });
});
