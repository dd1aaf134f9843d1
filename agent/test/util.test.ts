import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BufferPool, sharedPool } from '../src/util/buffer-pool.js';
import { baseName, dirName, joinPath, pathKey, pathToDisplay } from '../src/util/paths.js';

describe('BufferPool', () => {
  it('hands back released buffers instead of allocating', () => {
    const pool = new BufferPool(128 * 1024, 4);
    const a = pool.acquire();
    assert.equal(a.length, 128 * 1024);
    pool.release(a);
    assert.equal(pool.idleCount, 1);
    assert.equal(pool.acquire(), a);
    assert.equal(pool.idleCount, 0);
  });

  it('keeps at most maxIdle buffers and ignores a second release of the same buffer', () => {
    const pool = new BufferPool(1024, 2);
    const bufs = [pool.acquire(), pool.acquire(), pool.acquire()];
    pool.release(bufs[0]!);
    pool.release(bufs[0]!);
    assert.equal(pool.idleCount, 1);
    for (const b of bufs) pool.release(b);
    assert.equal(pool.idleCount, 2);
  });

  it('drops views and foreign buffers rather than pooling them', () => {
    const pool = new BufferPool(1024, 4);
    const a = pool.acquire();
    pool.release(a.subarray(0, 512));
    pool.release(Buffer.alloc(1024 * 2).subarray(0, 1024));
    pool.release(Buffer.alloc(10));
    assert.equal(pool.idleCount, 0);
  });

  it('buffers never share memory with each other', () => {
    const pool = new BufferPool(4096, 4);
    const a = pool.acquire();
    const b = pool.acquire();
    assert.notEqual(a.buffer, b.buffer);
    assert.equal(a.buffer.byteLength, 4096);
  });

  it('the shared pool uses 1 MiB buffers', () => {
    assert.equal(sharedPool().bufferSize, 1 << 20);
    assert.equal(sharedPool(), sharedPool());
  });

  it('rejects nonsense sizes', () => {
    assert.throws(() => new BufferPool(0), RangeError);
    assert.throws(() => new BufferPool(1.5), RangeError);
  });
});

describe('byte paths', () => {
  it('joinPath joins with one slash and keeps the bytes', () => {
    assert.equal(joinPath(Buffer.from('/a/b'), Buffer.from('c/d')).toString(), '/a/b/c/d');
    assert.equal(joinPath(Buffer.from('/'), Buffer.from('x')).toString(), '/x');
    assert.equal(joinPath(Buffer.from('/a'), new Uint8Array(0)).toString(), '/a');
    const odd = joinPath(Buffer.from('/r'), new Uint8Array([0x66, 0xff, 0x2e, 0x62]));
    assert.deepEqual([...odd], [...Buffer.from('/r/'), 0x66, 0xff, 0x2e, 0x62]);
  });

  it('pathToDisplay shows invalid UTF-8 with replacement characters', () => {
    assert.equal(pathToDisplay(new Uint8Array([0x66, 0xff, 0x2e, 0x62])), 'f\ufffd.b');
    assert.equal(pathToDisplay('plain'), 'plain');
    assert.equal(pathToDisplay(Buffer.from('héllo')), 'héllo');
  });

  it('baseName and dirName split at the last slash', () => {
    const p = Buffer.from('/a/b/c.txt');
    assert.equal(baseName(p).toString(), 'c.txt');
    assert.equal(dirName(p).toString(), '/a/b');
    assert.equal(dirName(Buffer.from('/x')).toString(), '/');
    assert.equal(dirName(Buffer.from('x')).toString(), '');
    assert.equal(baseName(Buffer.from('x')).toString(), 'x');
  });

  it('pathKey is lossless for arbitrary bytes', () => {
    const a = new Uint8Array([0x61, 0xff, 0x80]);
    assert.deepEqual([...Buffer.from(pathKey(a), 'latin1')], [...a]);
    assert.notEqual(pathKey(new Uint8Array([0xff])), pathKey(new Uint8Array([0xfe])));
  });
});
