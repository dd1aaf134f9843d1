import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hashBuffer, initCodecs, SmartcopyError } from '@smartcopy/protocol';
import { BufferPool } from '../src/util/buffer-pool.js';
import { hashFd, hashFile } from '../src/verify/hash-file.js';

let dir: string;
before(async () => {
  dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sc-verify-'));
  await initCodecs();
});
after(async () => {
  await fs.promises.rm(dir, { recursive: true, force: true });
});

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

describe('hashFile', () => {
  for (const size of [0, 1, 1 << 20, (5 << 19) + 7]) {
    it(`hashes a ${size}-byte file like a one-shot hash`, async () => {
      const data = randomBytes(size);
      const p = path.join(dir, `f${size}`);
      await fs.promises.writeFile(p, data);
      assert.deepEqual(await hashFile(p, 'sha256'), sha256(data));
      assert.deepEqual(await hashFile(Buffer.from(p), 'xxhash64'), await hashBuffer('xxhash64', data));
    });
  }

  it('hashes a range', async () => {
    const data = randomBytes(3 << 20);
    const p = path.join(dir, 'range');
    await fs.promises.writeFile(p, data);
    const r = { offset: 1000, length: (2 << 20) + 5 };
    assert.deepEqual(await hashFile(p, 'sha256', r), sha256(data.subarray(r.offset, r.offset + r.length)));
    assert.deepEqual(await hashFile(p, 'blake3', { offset: 0, length: 0 }), await hashBuffer('blake3', new Uint8Array(0)));
  });

  it('a range past the end of the file is SC_ERR_VANISHED', async () => {
    const p = path.join(dir, 'short');
    await fs.promises.writeFile(p, randomBytes(100));
    await assert.rejects(hashFile(p, 'sha256', { offset: 50, length: 100 }), (e: unknown) => e instanceof SmartcopyError && e.code === 'SC_ERR_VANISHED');
  });

  it('returns its buffers to the pool, also when it fails', async () => {
    const pool = new BufferPool(128 * 1024, 8);
    const p = path.join(dir, 'pooled');
    await fs.promises.writeFile(p, randomBytes(300 * 1024));
    await hashFile(p, 'sha256', undefined, pool);
    assert.equal(pool.idleCount, 2);
    await assert.rejects(hashFile(p, 'sha256', { offset: 0, length: 400 * 1024 }, pool));
    assert.equal(pool.idleCount, 2);
  });

  it('hashFd reads positionally and leaves the fd usable', async () => {
    const data = randomBytes(5000);
    const p = path.join(dir, 'fd');
    await fs.promises.writeFile(p, data);
    const fd = fs.openSync(p, 'r');
    try {
      assert.deepEqual(await hashFd(fd, 'sha256'), sha256(data));
      assert.deepEqual(await hashFd(fd, 'sha256'), sha256(data));
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a missing file is ENOENT', async () => {
    await assert.rejects(hashFile(path.join(dir, 'nope'), 'sha256'), { code: 'ENOENT' });
  });
});
