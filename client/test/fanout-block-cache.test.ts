import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BlockCache, type BlockConsumer } from '@smartcopy/agent';

const BS = 64 * 1024;

/** A file handle over memory that counts its reads (and can fail or hold them). */
function fakeFile(data: Buffer, opts: { fail?: boolean; gate?: Promise<void> } = {}): FileHandle & { reads: number } {
  const fh = {
    reads: 0,
    async read(buf: Buffer, off: number, len: number, pos: number) {
      fh.reads++;
      if (opts.gate) await opts.gate;
      if (opts.fail) throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      const n = Math.max(0, Math.min(len, data.length - pos));
      if (n > 0) data.copy(buf, off, pos, pos + n);
      return { bytesRead: n, buffer: buf };
    },
  };
  return fh as unknown as FileHandle & { reads: number };
}

function content(size: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

const SRC = Buffer.from('/data/file.bin');

/** Every block of a file, as streamRange asks for them. */
async function readAll(c: BlockConsumer, fh: FileHandle, size: number, release = true): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let pos = 0; pos < size; pos += BS) {
    const b = await c.read(SRC, fh, pos, Math.min(BS, size - pos));
    out.push(b);
    if (release) c.release(b);
  }
  return out;
}

describe('BlockCache', () => {
  it('reads each block once for every declared consumer and hands all of them the same buffer', async () => {
    const data = content(5 * BS + 123);
    const fh = fakeFile(data);
    const cache = new BlockCache({ blockSize: BS });
    const cs = [cache.consumer('a'), cache.consumer('b'), cache.consumer('c')];
    for (const c of cs) c.expect(SRC);
    const got = await Promise.all(cs.map((c) => readAll(c, fh, data.length, false)));
    assert.equal(fh.reads, 6, 'one disk read per block');
    for (let i = 0; i < 6; i++) {
      assert.equal(got[1]![i], got[0]![i], 'the very same Buffer object (no copy)');
      assert.equal(got[2]![i], got[0]![i]);
    }
    assert.ok(Buffer.concat(got[0]!).equals(data));
    const s = cache.stats();
    assert.equal(s.blocksRead, 6);
    assert.equal(s.blocksServed, 18);
    assert.equal(s.bytesRead, data.length);
    assert.equal(s.bytesServed, 3 * data.length);
    assert.equal(s.reReads, 0);
    // every consumer has taken every block: nothing is held for anyone any more
    assert.equal(cache.bytesHeld, 0);
    for (const g of got) for (const b of g) cs[0]!.release(b);
  });

  it('concurrent requests for one block share a single read in flight', async () => {
    const data = content(BS);
    let open!: () => void;
    const fh = fakeFile(data, { gate: new Promise<void>((r) => (open = r)) });
    const cache = new BlockCache({ blockSize: BS });
    const cs = [cache.consumer('a'), cache.consumer('b'), cache.consumer('c')];
    for (const c of cs) c.expect(SRC);
    const pending = cs.map((c) => c.read(SRC, fh, 0, BS));
    open();
    const bufs = await Promise.all(pending);
    assert.equal(fh.reads, 1);
    assert.equal(bufs[1], bufs[0]);
    assert.ok(bufs[0]!.equals(data));
  });

  it('returns a block to its pool only after every holder released it (refcount)', async () => {
    const data = content(BS, 3);
    const fh = fakeFile(data);
    const cache = new BlockCache({ blockSize: BS });
    const [a, b] = [cache.consumer('a'), cache.consumer('b')];
    a.expect(SRC);
    b.expect(SRC);
    const x = await a.read(SRC, fh, 0, BS);
    const y = await b.read(SRC, fh, 0, BS);
    assert.equal(x, y);
    a.release(x);
    // b still holds it: a new block must not reuse that memory
    const other = Buffer.from('/data/other.bin');
    a.expect(other);
    b.expect(other);
    const z = await a.read(other, fakeFile(content(BS, 9)), 0, BS);
    assert.notEqual(z.buffer, y.buffer, 'a held buffer is never recycled');
    assert.ok(y.equals(data), 'still intact for its holder');
    b.release(y);
    a.release(z);
    const w = await b.read(other, fakeFile(content(BS, 9)), 0, BS);
    assert.equal(w, z, 'b is served the block a read');
    b.release(w);
    // now both blocks are free; the next fresh read reuses pooled memory
    const third = Buffer.from('/data/third.bin');
    a.expect(third);
    b.expect(third);
    const v = await a.read(third, fakeFile(content(BS, 5)), 0, BS);
    assert.ok(v.buffer === y.buffer || v.buffer === z.buffer, 'released memory is reused');
  });

  it('a consumer that was not declared neither holds blocks back nor is waited for', async () => {
    const data = content(3 * BS);
    const fh = fakeFile(data);
    const cache = new BlockCache({ blockSize: BS });
    const a = cache.consumer('a');
    const stray = cache.consumer('stray');
    a.expect(SRC);
    await readAll(a, fh, data.length);
    assert.equal(cache.bytesHeld, 0, 'nobody else declared the file: nothing kept');
    await readAll(stray, fh, data.length);
    assert.equal(fh.reads, 6);
    assert.equal(stray.reReads, 3, 'it read again what was already read');
  });

  it('bounds memory when a declared consumer never comes, without stalling the others', async () => {
    const size = 20 * BS;
    const data = content(size);
    const fh = fakeFile(data);
    const cache = new BlockCache({ blockSize: BS, maxBytes: 4 * BS });
    const fast = cache.consumer('fast');
    const ghost = cache.consumer('ghost');
    fast.expect(SRC);
    ghost.expect(SRC);
    await readAll(fast, fh, size);
    assert.ok(cache.bytesHeld <= 4 * BS, `held ${cache.bytesHeld}`);
    assert.equal(cache.bytesHeld, 4 * BS, 'the newest blocks are kept for the missing consumer');
    const s = cache.stats();
    assert.equal(s.evictions, 16, 'the oldest were dropped');
    assert.ok(s.peakBytes <= 4 * BS);
    ghost.close();
    assert.equal(cache.bytesHeld, 0, 'closing the consumer frees what was kept for it');
  });

  it('a slow consumer past the bound re-reads the dropped blocks itself; the rest are shared', async () => {
    const size = 12 * BS;
    const data = content(size, 4);
    const fh = fakeFile(data);
    const cache = new BlockCache({ blockSize: BS, maxBytes: 4 * BS });
    const fast = cache.consumer('fast');
    const slow = cache.consumer('slow');
    fast.expect(SRC);
    slow.expect(SRC);
    await readAll(fast, fh, size);
    const slowBufs = await readAll(slow, fh, size, false);
    assert.ok(Buffer.concat(slowBufs).equals(data), 'the slow consumer still gets the right bytes');
    assert.equal(slow.reReads, 8);
    assert.equal(slow.blocksRead, 8);
    assert.equal(fast.reReads, 0);
    assert.equal(fh.reads, 12 + 8);
    const s = cache.stats();
    assert.equal(s.reReads, 8);
    assert.equal(s.blocksServed, 24);
    for (const b of slowBufs) slow.release(b);
    assert.equal(cache.bytesHeld, 0);
  });

  it('a consumer declared late (a retried node) still gets what is cached for the others', async () => {
    const data = content(4 * BS, 6);
    const fh = fakeFile(data);
    const cache = new BlockCache({ blockSize: BS });
    const [a, b] = [cache.consumer('a'), cache.consumer('b')];
    a.expect(SRC);
    b.expect(SRC);
    await readAll(a, fh, data.length);
    const late = cache.consumer('late');
    late.expect(SRC);
    await readAll(late, fh, data.length);
    assert.equal(fh.reads, 4, 'the late consumer took the blocks kept for b');
    assert.equal(cache.bytesHeld, 4 * BS, 'still kept for b');
    await readAll(b, fh, data.length);
    assert.equal(fh.reads, 4);
    assert.equal(cache.bytesHeld, 0);
  });

  it('a consumer that already took a block is not waited for when it is read again', async () => {
    const data = content(2 * BS, 8);
    const fh = fakeFile(data);
    const cache = new BlockCache({ blockSize: BS });
    const [a, b] = [cache.consumer('a'), cache.consumer('b')];
    a.expect(SRC);
    b.expect(SRC);
    await readAll(a, fh, data.length);
    await readAll(b, fh, data.length);
    assert.equal(cache.bytesHeld, 0);
    const again = cache.consumer('again');
    again.expect(SRC);
    await readAll(again, fh, data.length);
    assert.equal(cache.bytesHeld, 0, 'a and b are done with these blocks: nothing kept for them');
    assert.equal(again.reReads, 2);
  });

  it('a failed read reaches every consumer waiting for that block, and nothing stays cached', async () => {
    let open!: () => void;
    const fh = fakeFile(content(BS), { fail: true, gate: new Promise<void>((r) => (open = r)) });
    const cache = new BlockCache({ blockSize: BS });
    const [a, b] = [cache.consumer('a'), cache.consumer('b')];
    a.expect(SRC);
    b.expect(SRC);
    const pa = a.read(SRC, fh, 0, BS);
    const pb = b.read(SRC, fh, 0, BS);
    open();
    await assert.rejects(pa, /EIO/);
    await assert.rejects(pb, /EIO/);
    assert.equal(cache.bytesHeld, 0);
    // the next attempt reads again instead of finding a broken entry
    const ok = await a.read(SRC, fakeFile(content(BS, 2)), 0, BS);
    assert.ok(ok.equals(content(BS, 2)));
  });

  it('returns short buffers at the end of a file (the sender reports the change)', async () => {
    const data = content(BS + 10);
    const fh = fakeFile(data);
    const cache = new BlockCache({ blockSize: BS });
    const a = cache.consumer('a');
    const b = await a.read(SRC, fh, BS, BS);
    assert.equal(b.length, 10);
    const e = await a.read(SRC, fh, 2 * BS, BS);
    assert.equal(e.length, 0);
  });

  it('readSync shares small files through the same cache', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sc-bc-'));
    try {
      const file = path.join(dir, 'small.txt');
      fs.writeFileSync(file, 'hello fan-out\n');
      const src = Buffer.from(file);
      const cache = new BlockCache({ blockSize: BS });
      const cs = [cache.consumer('a'), cache.consumer('b')];
      for (const c of cs) c.expect(src);
      const got = cs.map((c) => {
        const fd = fs.openSync(file, 'r');
        try {
          // one byte more than expected, as sendSmallFile asks
          return c.readSync(src, fd, 0, 15);
        } finally {
          fs.closeSync(fd);
        }
      });
      assert.equal(got[0]!.toString(), 'hello fan-out\n');
      assert.equal(got[1], got[0]);
      assert.equal(cache.stats().blocksRead, 1);
      for (const [i, c] of cs.entries()) c.release(got[i]!);
      assert.equal(cache.bytesHeld, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('forgets a file once every declared consumer has read all of it (known size)', async () => {
    const cache = new BlockCache({ blockSize: BS });
    const [a, b] = [cache.consumer('a'), cache.consumer('b')];
    const files = Array.from({ length: 50 }, (_, i) => ({ src: Buffer.from(`/data/f${i}`), data: content(i * 1000 + (i % 3) * BS, i) }));
    for (const f of files) for (const c of [a, b]) c.expect(f.src, f.data.length);
    assert.equal(cache.filesTracked, 50);
    for (const c of [a, b]) {
      for (const f of files) {
        const fh = fakeFile(f.data);
        if (f.data.length === 0) c.release(await c.read(f.src, fh, 0, 1));
        for (let pos = 0; pos < f.data.length; pos += BS) c.release(await c.read(f.src, fh, pos, Math.min(BS, f.data.length - pos)));
      }
    }
    assert.equal(cache.filesTracked, 0, 'nothing is kept about finished files before the consumers close');
    assert.equal(cache.bytesHeld, 0);
    assert.equal(cache.stats().blocksServed, 2 * cache.stats().blocksRead);
  });

  it('clear() drops everything and later releases are harmless', async () => {
    const data = content(2 * BS);
    const fh = fakeFile(data);
    const cache = new BlockCache({ blockSize: BS });
    const [a, b] = [cache.consumer('a'), cache.consumer('b')];
    a.expect(SRC);
    b.expect(SRC);
    const bufs = await readAll(a, fh, data.length, false);
    assert.equal(cache.bytesHeld, 2 * BS);
    cache.clear();
    assert.equal(cache.bytesHeld, 0);
    for (const x of bufs) a.release(x);
    a.release(Buffer.alloc(10));
    assert.ok(Buffer.concat(bufs).equals(data));
  });
});
