import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SmartcopyError } from '@smartcopy/protocol';
import { CantNativeCopy, copyByReadWrite, copyRange, nativeCopyFile, platformCopier, type NativeCopier } from '../src/native/index.js';
import { BufferPool } from '../src/util/buffer-pool.js';

let dir: string;
before(async () => {
  dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sc-native-'));
});
after(async () => {
  await fs.promises.rm(dir, { recursive: true, force: true });
});

function file(name: string, data: Buffer, mode = 0o644): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, data);
  fs.chmodSync(p, mode);
  return p;
}

describe('nativeCopyFile', () => {
  it('copies content and permission bits', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const src = file('src1', data, 0o640);
    const dst = path.join(dir, 'dst1');
    await nativeCopyFile(Buffer.from(src), Buffer.from(dst));
    assert.deepEqual(fs.readFileSync(dst), data);
    assert.equal(fs.statSync(dst).mode & 0o777, 0o640);
  });

  it('copies an empty file', async () => {
    const src = file('empty', Buffer.alloc(0));
    await nativeCopyFile(src, path.join(dir, 'empty-copy'));
    assert.equal(fs.statSync(path.join(dir, 'empty-copy')).size, 0);
  });

  it('with fresh, replaces a symlink planted at the destination instead of writing through it', async () => {
    const victim = file('victim', Buffer.from('precious'));
    const dst = path.join(dir, 'planted');
    fs.symlinkSync(victim, dst);
    const src = file('src2', Buffer.from('new content'));
    await nativeCopyFile(src, dst, { fresh: true });
    assert.equal(fs.readFileSync(victim, 'utf8'), 'precious');
    assert.equal(fs.lstatSync(dst).isFile(), true);
    assert.equal(fs.readFileSync(dst, 'utf8'), 'new content');
  });

  it('falls back to a read/write loop when the copier answers CantNativeCopy', async () => {
    let calls = 0;
    const cant: NativeCopier = {
      name: 'never',
      copy: async () => {
        calls++;
        return CantNativeCopy;
      },
    };
    const data = randomBytes(2.5 * 1024 * 1024);
    const src = file('src3', data, 0o600);
    const dst = path.join(dir, 'dst3');
    await nativeCopyFile(src, dst, {}, cant);
    assert.equal(calls, 1);
    assert.deepEqual(fs.readFileSync(dst), data);
    assert.equal(fs.statSync(dst).mode & 0o777, 0o600);
  });

  it('real failures are thrown, not turned into a fallback', async () => {
    await assert.rejects(nativeCopyFile(path.join(dir, 'missing'), path.join(dir, 'x')), { code: 'ENOENT' });
  });

  it('picks the copier for this platform', () => {
    const want = process.platform === 'linux' ? 'linux-copy_file_range' : process.platform === 'darwin' ? 'darwin-clonefile' : 'copyfile';
    assert.equal(platformCopier.name, want);
  });
});

describe('copyByReadWrite', () => {
  it('copies to EOF and removes its output on failure', async () => {
    const data = randomBytes(1024 * 1024 * 2 + 3);
    const src = file('rw-src', data);
    const dst = path.join(dir, 'rw-dst');
    await copyByReadWrite(src, dst, {}, new BufferPool(128 * 1024, 4));
    assert.deepEqual(fs.readFileSync(dst), data);
    await assert.rejects(copyByReadWrite(dir, path.join(dir, 'rw-dir'), {}), { code: 'EISDIR' });
    assert.equal(fs.existsSync(path.join(dir, 'rw-dir')), false);
  });
});

describe('copyRange', () => {
  it('copies one range into the same range of the destination, leaving the rest alone', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const src = file('range-src', data);
    const dstPath = path.join(dir, 'range-dst');
    fs.writeFileSync(dstPath, Buffer.alloc(data.length, 0xaa));
    const s = fs.openSync(src, 'r');
    const d = fs.openSync(dstPath, 'r+');
    const pool = new BufferPool(256 * 1024, 4);
    try {
      await copyRange(s, d, 100_000, 2_000_000, pool);
    } finally {
      fs.closeSync(s);
      fs.closeSync(d);
    }
    const out = fs.readFileSync(dstPath);
    assert.deepEqual(out.subarray(100_000, 2_100_000), data.subarray(100_000, 2_100_000));
    assert.ok(out.subarray(0, 100_000).every((x) => x === 0xaa));
    assert.ok(out.subarray(2_100_000).every((x) => x === 0xaa));
    assert.equal(pool.idleCount, 2);
  });

  it('a source shorter than the range is SC_ERR_VANISHED', async () => {
    const src = file('short-src', randomBytes(1000));
    const dstPath = path.join(dir, 'short-dst');
    fs.writeFileSync(dstPath, '');
    const s = fs.openSync(src, 'r');
    const d = fs.openSync(dstPath, 'r+');
    try {
      await assert.rejects(copyRange(s, d, 500, 1000), (e: unknown) => e instanceof SmartcopyError && e.code === 'SC_ERR_VANISHED');
    } finally {
      fs.closeSync(s);
      fs.closeSync(d);
    }
  });
});
